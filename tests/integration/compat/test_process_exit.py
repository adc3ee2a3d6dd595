"""Whole asyncio programs in subprocesses: Ctrl-C, a loop that ends without ``stop()``, an
interpreter that exits with the mesh still running, and a runtime wedged by blocking code.

Each program prints a line per ``teardown()``; the test checks those lines and that the process
ended within a bound (``subprocess`` timeout), i.e. that nothing hangs on the runtime thread.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROLOGUE = textwrap.dedent(
    """
    import asyncio, threading
    import jarvis_trio.compat._lifecycle as lifecycle
    from jarvis_trio.agent import CustomAgent
    from jarvis_trio.mesh import Mesh

    class Worker(CustomAgent):
        role = "worker"
        wedge = False

        async def teardown(self):
            print(f"teardown {self.agent_id}", flush=True)
            if self.wedge:
                threading.Event().wait(60)  # blocking code: wedges the whole Trio thread

    def make_mesh():
        mesh = Mesh(config={"p2p_enabled": False}, env_file=None, environ={})
        mesh.add(Worker, agent_id="worker-1")
        mesh.add(Worker, agent_id="worker-2")
        return mesh
    """
)

TEARDOWNS = ["teardown worker-1", "teardown worker-2"]
BOUND = 30.0


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "program.py"
    path.write_text(PROLOGUE + textwrap.dedent(body))
    return path


def _run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=BOUND,
        cwd=path.parent,
        check=False,
    )


def _teardowns(stdout: str) -> list[str]:
    return sorted(line for line in stdout.splitlines() if line.startswith("teardown "))


def test_ctrl_c_in_asyncio_run_stops_the_mesh_and_runs_every_teardown(tmp_path: Path) -> None:
    path = _script(
        tmp_path,
        """
        async def main():
            mesh = make_mesh()
            await mesh.start()
            print("started", flush=True)
            await mesh.run_forever()

        asyncio.run(main())
        """,
    )
    process = subprocess.Popen(
        [sys.executable, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode in (-signal.SIGINT, 128 + signal.SIGINT, 1), stderr
    assert "KeyboardInterrupt" in stderr
    assert _teardowns(stdout) == TEARDOWNS, stderr


def test_a_ctrl_c_recorded_while_the_loop_falls_asleep_still_stops_the_mesh(
    tmp_path: Path,
) -> None:
    """A SIGINT whose C-level handler runs after the main thread's last check for signals and
    does not interrupt its ``epoll_wait`` leaves ``asyncio.run``'s handler pending until the
    loop wakes; idle in ``run_forever()``, nothing else wakes it. Under load the main thread
    can be preempted in that window just before it sleeps; here the window is made explicit:
    the selector hands a thread of the program (which, started from the main thread, does not
    block SIGINT) the go-ahead as the loop goes to sleep, and that thread, which needs the GIL
    to run and gets it only once the main thread gives it up to sleep, takes the SIGINT itself.
    """
    path = _script(
        tmp_path,
        """
        import selectors, signal, sys

        # the thread below runs only when the main thread gives the GIL up (to sleep), never
        # because it waited for it too long
        sys.setswitchinterval(1000.0)
        asleep = threading.Event()
        armed = False

        class Selector(selectors.DefaultSelector):
            def select(self, timeout=None):
                if armed and timeout is None and not asleep.is_set():
                    asleep.set()
                return super().select(timeout)

        def ctrl_c_that_lands_elsewhere():
            asleep.wait()
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)

        threading.Thread(target=ctrl_c_that_lands_elsewhere, daemon=True).start()

        async def main():
            global armed
            mesh = make_mesh()
            await mesh.start()
            print("started", flush=True)
            armed = True  # the loop's next sleep is the one run_forever() waits in
            await mesh.run_forever()

        loop_factory = lambda: asyncio.SelectorEventLoop(Selector())
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main())
        """,
    )
    result = _run(path)
    assert result.returncode in (-signal.SIGINT, 128 + signal.SIGINT, 1), result.stderr
    assert "KeyboardInterrupt" in result.stderr
    assert result.stdout.splitlines()[0] == "started"
    assert _teardowns(result.stdout) == TEARDOWNS, result.stderr


@pytest.mark.parametrize("ending", ["return", "raise"])
def test_asyncio_run_ending_without_stop_runs_every_teardown(tmp_path: Path, ending: str) -> None:
    path = _script(
        tmp_path,
        f"""
        async def main():
            mesh = make_mesh()
            await mesh.start()
            if {ending == "raise"!r}:
                raise LookupError("main failed")

        try:
            asyncio.run(main())
        except LookupError:
            print("main failed", flush=True)
        print("after asyncio.run", flush=True)
        """,
    )
    result = _run(path)
    assert result.returncode == 0, result.stderr
    assert _teardowns(result.stdout) == TEARDOWNS
    # The teardowns ran before asyncio.run returned, not at interpreter exit.
    assert result.stdout.splitlines()[-1] == "after asyncio.run"


def test_interpreter_exit_without_stop_runs_teardown_and_does_not_hang(tmp_path: Path) -> None:
    path = _script(
        tmp_path,
        """
        async def start_only():
            mesh = make_mesh()
            await mesh.start()

        loop = asyncio.new_event_loop()
        loop.run_until_complete(start_only())  # the loop is never closed, the mesh never stopped
        print("leaving", flush=True)
        """,
    )
    result = _run(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "leaving"
    assert _teardowns(result.stdout) == TEARDOWNS


@pytest.mark.parametrize("shape", ["exit", "asyncio.run"])
def test_a_wedged_runtime_does_not_hang_the_exit(tmp_path: Path, shape: str) -> None:
    path = _script(
        tmp_path,
        f"""
        lifecycle.EXIT_TIMEOUT = 0.5
        lifecycle.SHUTDOWN_TIMEOUT = 0.5
        Worker.wedge = True

        async def start_only():
            mesh = make_mesh()
            await mesh.start()

        if {shape == "exit"!r}:
            loop = asyncio.new_event_loop()
            loop.run_until_complete(start_only())
        else:
            asyncio.run(start_only())
        print("leaving", flush=True)
        """,
    )
    result = _run(path)
    assert result.returncode == 0, result.stderr
    assert "leaving" in result.stdout
    assert "did not stop within" in result.stderr  # the bound was hit, and said so
    assert len(_teardowns(result.stdout)) >= 1  # the first teardown wedged the thread
