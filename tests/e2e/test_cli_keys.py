"""``jarvis-trio keys``: rotating the cluster key of a running three-process cluster through
each node's admin endpoint, as an operator does it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from jarvis_trio.swim import Keyring, codec
from jarvis_trio.swim.keyring import fingerprint
from jarvis_trio.testing.ports import free_swim_port

from .cli_cluster import CHECK_BOUND, PROCESS_BOUND, ROOT, Node, Watch, clean_env, cli

AGENTS = "examples.cluster_agents"
# three node processes and a dozen CLI runs: minutes on a loaded machine, each step bounded
pytestmark = pytest.mark.timeout(600)
KEY = "the-current-cluster-secret-32chars"
NEW_KEY = "the-next-cluster-secret-of-32-chars"
TOKEN = "an-admin-token-of-some-length"


@pytest.fixture
def keyed_cluster() -> Iterator[list[Node]]:
    # SWIM at its LAN timings: no node is killed here, and the test asserts that nobody was
    # declared dead; with the 0.1 s probe timeout of FAST_SWIM a loaded machine alone can
    # have a node declared dead, the key rotation having nothing to do with it
    env = clean_env(JC_CLUSTER_KEY=KEY, JC_ADMIN_TOKEN=TOKEN)
    ports = ("--admin-port", "0")
    first = Node(
        "n1", [f"{AGENTS}:Gateway"], "--port", str(free_swim_port()), *ports, env=env
    ).wait_ready()
    others = [
        Node(name, [f"{AGENTS}:{cls}"], "--port", str(free_swim_port()), "--seed", first.swim,
             *ports, env=env)
        for name, cls in (("n2", "Technical"), ("n3", "Billing"))
    ]  # fmt: skip
    nodes = [first, *(node.wait_ready() for node in others)]
    yield nodes
    for node in nodes:
        node.kill()


def admin(node: Node, *args: str) -> list[str]:
    return [*args, "--admin", node.admin, "--token", TOKEN]


def states(node: Node) -> dict[str, str]:
    done = cli(*admin(node, "members", "--format", "json"))
    assert done.returncode == 0, done.stderr
    return {m["name"]: m["state"] for m in json.loads(done.stdout)}


def swim_stats(node: Node) -> dict[str, int]:
    done = cli(*admin(node, "stats", "--format", "json"))
    assert done.returncode == 0, done.stderr
    swim: dict[str, int] = json.loads(done.stdout)["swim"]
    return swim


def test_rotating_the_key_of_a_running_cluster_through_the_cli(keyed_cluster: list[Node]) -> None:
    alive = {"n1": "alive", "n2": "alive", "n3": "alive"}
    for node in keyed_cluster:
        with Watch(node.admin, "--token", TOKEN) as seen:
            seen.wait(lambda view: view.members == alive, f"{node.name} sees three alive")
    n1 = keyed_cluster[0]

    # the keyring is never open: without the token, 401 and one line on stderr
    anonymous = cli("keys", "list", "--admin", n1.admin, env=clean_env())
    assert anonymous.returncode == 1 and anonymous.stdout == ""
    assert anonymous.stderr.splitlines() == [
        f"jarvis-trio: error: the admin endpoint at {n1.admin} answered 401 (it needs a "
        "token): pass --token or set JC_ADMIN_TOKEN"
    ]

    old, new = fingerprint(KEY), fingerprint(NEW_KEY)
    steps = (("install", NEW_KEY, "installed"), ("use", NEW_KEY, "made primary"))
    for action, key, done_text in (*steps, ("remove", old, "removed")):
        for node in keyed_cluster:  # each step on every node before the next step
            if node is n1 and action == "install":  # KEY '-': the key comes from stdin
                done = subprocess.run(
                    [sys.executable, "-m", "jarvis_trio", *admin(node, "keys", action, "-")],
                    input=f"{key}\n", cwd=ROOT, env=clean_env(), capture_output=True,
                    text=True, timeout=PROCESS_BOUND, check=False,
                )  # fmt: skip
            else:
                done = cli(*admin(node, "keys", action, key))
            assert done.returncode == 0, done.stderr
            named = old if action == "remove" else new
            assert done.stdout.startswith(f"{node.name}: key {named} {done_text} ("), done.stdout
    listed = cli(*admin(n1, "keys", "list"))
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["Key", "Primary", "Verified"] and rows[1][:2] == [new, "yes"]
    assert len(rows) == 2 and KEY not in listed.stdout and NEW_KEY not in listed.stdout

    # the primary key cannot go
    primary = cli(*admin(n1, "keys", "remove", NEW_KEY))
    assert primary.returncode == 1 and primary.stdout == ""
    assert primary.stderr.splitlines() == [
        f"jarvis-trio: error: {n1.admin}/keys/remove answered 400: key {new} is the primary "
        "key: make another key primary first"
    ]

    # traffic flows under the new key; nobody was declared dead on the way. The client node
    # runs SWIM at the nodes' LAN timings too: it is a member while it runs, and a death it
    # declared under load (0.1 s probe timeout) would drop billing from technical's directory
    asked = cli(
        "request", "gateway", '{"ticket": 7}', "--seed", n1.swim, "--timeout", "60",
        env=clean_env(JC_CLUSTER_KEY=NEW_KEY),
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    reply = json.loads(asked.stdout)
    if not isinstance(reply.get("billing"), dict):
        # technical got no answer from billing in its 5 s: the nodes' logs (INFO) tell a
        # request that reached billing late from a node or agent that was dropped
        logs = "".join(f"\n--- {node.name}\n{node.stderr()}" for node in keyed_cluster)
        pytest.fail(f"no balance in the reply {reply}{logs}")
    assert reply["billing"]["ticket"] == 7
    for node in keyed_cluster:
        assert {n: s for n, s in states(node).items() if n in alive} == alive
        assert swim_stats(node).get("declared_dead", 0) == 0

    # the old key is refused: a datagram sealed with it, and a client that holds only it
    refused = swim_stats(n1).get("drop_auth", 0)
    host, port = n1.swim.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for seq, key in ((1, KEY), (2, NEW_KEY)):
            ping = codec.header_ping(seq, codec.encode_name("n1")) + b"\x00"
            raw.sendto(Keyring([key], "jarvis").seal(ping), (host, int(port)))
        # n1 reads its socket in order: its ack to the second ping (the new key) comes after
        # it took the first one in
        raw.settimeout(CHECK_BOUND)
        ack = Keyring([NEW_KEY], "jarvis").open(raw.recv(65536))
    assert ack is not None and ack.startswith(codec.header_seq(codec.ACK, 2)), ack
    assert swim_stats(n1).get("drop_auth", 0) > refused
    stale = cli(
        "request", "gateway", "{}", "--seed", n1.swim, "--timeout", "3",
        env=clean_env(JC_CLUSTER_KEY=KEY),
    )  # fmt: skip
    assert stale.returncode == 1
    assert "nothing joined in the cluster within 3 s" in stale.stderr
