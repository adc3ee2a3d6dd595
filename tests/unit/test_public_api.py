"""The public surface is exactly what jarvis_trio/__init__.py says, and nothing leaks."""

from __future__ import annotations

import inspect

import jarvis_trio
import jarvis_trio.testing as testing
from jarvis_trio import errors

DOCUMENTED_API = {
    # the names users' code written against the JarvisCore P2P docs imports
    "Agent",
    "CustomAgent",
    "Mesh",
    "PeerClient",
    "PeerInfo",
    "IncomingMessage",
    "AuthenticationManager",
    "NexusCallProxy",
    "BlobStorage",
    "MailboxMessage",
}


def test_all_lists_every_public_name_and_only_those() -> None:
    exported = set(jarvis_trio.__all__)
    assert len(exported) == len(jarvis_trio.__all__), "duplicates in __all__"
    public = {n for n in dir(jarvis_trio) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(jarvis_trio, n))}
    assert public - modules == exported
    assert exported >= DOCUMENTED_API


def test_every_exported_name_comes_from_the_package() -> None:
    for name in jarvis_trio.__all__:
        value = getattr(jarvis_trio, name)
        module = getattr(value, "__module__", None) or type(value).__module__
        assert module.startswith("jarvis_trio"), (name, module)


def test_every_error_class_is_exported_and_rooted_in_jarvis_error() -> None:
    classes = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert classes <= set(jarvis_trio.__all__)
    for name in classes:
        assert issubclass(getattr(errors, name), jarvis_trio.JarvisError)
        assert name in (errors.__doc__ or ""), f"{name} missing from the tree in errors.__doc__"


def test_testing_helpers_resolve_lazily() -> None:
    for name in testing.__all__:
        assert callable(getattr(testing, name))
    try:
        testing.nonexistent  # noqa: B018
    except AttributeError as error:
        assert "nonexistent" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_the_type_hints_ship_with_the_package() -> None:
    """PEP 561: without py.typed (packaged as data) users' type checkers ignore every hint."""
    import tomllib
    from pathlib import Path

    package = Path(jarvis_trio.__file__).parent
    assert (package / "py.typed").is_file()
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["jarvis_trio"]


def test_examples_import_only_the_public_surface() -> None:
    """A learner copies the examples' imports: they name jarvis_trio (or jarvis_trio.testing
    for the development servers), never a private module."""
    import ast
    from pathlib import Path

    examples = Path(jarvis_trio.__file__).parents[1] / "examples"
    allowed = {"jarvis_trio", "jarvis_trio.testing"}
    found = {}
    for path in sorted(examples.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name.startswith("jarvis_trio") and name not in allowed:
                    found[f"{path.relative_to(examples)}:{node.lineno}"] = name
    assert len(list(examples.rglob("*.py"))) >= 6
    assert found == {}


def test_importing_the_package_imports_nothing_heavy() -> None:
    """Names resolve on first use, so ``jarvis-trio members`` never pays for trio, redis or
    ZeroMQ; checked in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import sys, jarvis_trio, jarvis_trio.cli; "
        "print(sorted(m for m in ('trio', 'redis', 'zmq', 'httpx', 'msgspec') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# The import paths users may write besides ``jarvis_trio`` itself, and the names each must keep
# providing (docs/architecture.md, "Public and private modules"). Every other module is private.
DOCUMENTED_PATHS: dict[str, set[str]] = {
    "jarvis_trio.testing": {
        "RedisServer",
        "NexusGateway",
        "serve_nexus_gateway",
        "free_port",
        "free_swim_port",
    },
    # the seed's `from jarviscore.auth.nexus import NexusCallProxy`, with the import changed
    "jarvis_trio.auth.nexus": {"NexusCallProxy"},
    "jarvis_trio.compat": {"TrioHost", "asyncio_misuse_explained", "explain_asyncio_misuse"},
    "jarvis_trio.swim": {"SwimNode", "SwimConfig", "open_swim_node", "Simulator"},
    "jarvis_trio.bench": {"Result", "run_modules", "compare"},
}


def test_documented_deep_paths_keep_their_names() -> None:
    import importlib
    from pathlib import Path

    architecture = (Path(jarvis_trio.__file__).parents[1] / "docs" / "architecture.md").read_text()
    for path, names in DOCUMENTED_PATHS.items():
        module = importlib.import_module(path)
        exported = set(getattr(module, "__all__", ()))
        assert names <= exported, (path, names - exported)
        for name in exported:
            assert getattr(module, name) is not None, (path, name)
        assert f"`{path}`" in architecture, f"{path} is public: say so in docs/architecture.md"


def test_compat_exports_what_programs_call_not_its_machinery() -> None:
    import jarvis_trio.compat as compat

    machinery = {
        "acquire_host",
        "release_host",
        "host_of_loop",
        "start_hosted",
        "stop_hosted",
        "current_host",
        "trio_side",
        "trio_side_sync",
        "RuntimeHost",
        "asyncio_guard",
    }
    assert not machinery & set(compat.__all__)
