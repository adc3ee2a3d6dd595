"""How the support swarm is run: modes, test queries, the success criteria, the crash drill.

The agents live in ``agents.py``; this module builds the mesh around them, in one of three
modes:

* one node: the four agents in one mesh in this process (the default);
* one agent per process (``--agent NAME --port P --seeds HOST:PORT``), the gateway driving the
  queries once the swarm is stable;
* ``--distributed``: this process starts the four agent processes and relays the gateway's exit
  status (``--crash-billing`` makes the billing process die on its first query: the drill).

It prints each query with its route and resolution, then the table of the seed's success
criteria, and exits 0 only when every criterion holds.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from agents import (
    AGENT_CLASSES,
    AuthOutcome,
    BillingAgent,
    EscalationAgent,
    GatewayAgent,
    Specialist,
    TechnicalAgent,
    read_records,
)

from jarvis_trio import MailboxMessage, Mesh
from jarvis_trio.testing import free_port, serve_nexus_gateway

log = logging.getLogger("support_swarm")

# the entry point the seed documents; the distributed mode starts it once per agent
ENTRY = Path(__file__).resolve().parent.parent / "support_swarm.py"

TEST_QUERIES: tuple[tuple[str, str], ...] = (
    ("cust-001", "My API keeps returning 401 Unauthorized errors"),
    ("cust-002", "I was charged twice for my subscription last month"),
    ("cust-003", "The dashboard shows wrong data for my organisation"),
    ("cust-004", "API token refresh is failing with integration error"),
)
EXPECTED_ROUTES = {
    "cust-001": "technical_support",
    "cust-002": "billing_support",
    "cust-003": "escalation",
    "cust-004": "technical_support",
}
AGENT_FLAGS = {
    "gateway": "gateway",
    "technical": "technical_support",
    "billing": "billing_support",
    "escalation": "escalation",
}
DEFAULT_PORT = 7960


class CrashingBillingAgent(BillingAgent):
    """The failure drill (``--crash-billing``): dies like ``kill -9`` on its first query, so
    the gateway has to notice and escalate instead."""

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        log.warning("billing process crashing on purpose (--crash-billing)")
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Report:
    """Outcomes of one run, checked against the example's success criteria."""

    agents_started: int = 0
    stabilised: bool = False
    routes: list[dict[str, Any]] = field(default_factory=list)
    auth: AuthOutcome = field(default_factory=AuthOutcome)
    escalation_records: list[str] = field(default_factory=list)
    blob_root: Path = Path("blob_storage")
    # path -> text, as read back through the nodes' blob storage (any backend)
    record_texts: dict[str, str] = field(default_factory=dict)
    # role -> how many of the records that node could read (distributed runs)
    readable_by: dict[str, int] = field(default_factory=dict)

    def criteria(self, expected_routes: dict[str, str]) -> list[tuple[str, bool, str]]:
        """The seed's success criteria for the queries that were run (``expected_routes``
        maps the test queries among them to their specialist)."""
        routed = {r["customer_id"]: r.get("route") for r in self.routes}
        wrong = [c for c, role in expected_routes.items() if routed.get(c) != role]
        unrouted = [r["customer_id"] for r in self.routes if r.get("route") is None]
        escalated = [r for r in self.routes if r.get("route") == "escalation"]
        records_ok = len(self.escalation_records) == len(escalated) and all(
            _record_ok(self.record_texts.get(path)) for path in self.escalation_records
        )
        asked_technical = any(r.get("classified") == "technical_support" for r in self.routes)
        auth_ok = self.auth.state in {"completed", "degraded"} or (
            self.auth.state == "not run" and not asked_technical
        )
        problems = [f"unexpected: {', '.join(wrong)}"] if wrong else []
        problems += [f"undeliverable: {', '.join(unrouted)}"] if unrouted else []
        shared = [
            (
                "escalation records readable from every node",
                all(n == len(self.escalation_records) for n in self.readable_by.values()),
                ", ".join(f"{role} {n}" for role, n in sorted(self.readable_by.items())),
            )
        ]
        return [
            (
                "4 agents start and join the mesh",
                self.agents_started == 4 and self.stabilised,
                f"{self.agents_started} agents, stabilised={self.stabilised}",
            ),
            (
                f"gateway routes all {len(self.routes)} queries",
                not problems,
                "; ".join(problems) or "all as expected",
            ),
            (
                "technical agent completes or degrades the Nexus flow",
                auth_ok,
                f"{self.auth.state}{': ' + self.auth.detail if self.auth.detail else ''}",
            ),
            (
                "escalation blobs created",
                records_ok,
                f"{len(self.escalation_records)} record(s) for {len(escalated)} escalation(s)",
            ),
            *(shared if self.readable_by else []),
        ]


def _record_ok(text: str | None) -> bool:
    if text is None:
        return False
    lines = text.splitlines()
    prefixes = ("ESCALATION #", "Customer: ", "Query: ", "Timestamp: ")
    return len(lines) == 4 and all(
        line.startswith(prefix) for line, prefix in zip(lines, prefixes, strict=True)
    )


def mesh_config(
    args: argparse.Namespace, *, port: int, seeds: Sequence[str] = ()
) -> dict[str, Any]:
    """The seed document's configuration, with this run's ports and URLs."""
    config: dict[str, Any] = {
        "p2p_enabled": True,
        "bind_host": "127.0.0.1",
        "bind_port": port,
        "node_name": f"support-swarm-{args.agent}" if args.agent else "support-swarm",
        "auth_mode": "production",
        "blob_storage_path": args.blob_root,
    }
    if args.redis_url:
        config["redis_url"] = args.redis_url
    if args.nexus_gateway_url:
        config["nexus_gateway_url"] = args.nexus_gateway_url
    if seeds:
        config["seed_nodes"] = ",".join(seeds)
    if args.swim_period:
        config["swim_period"] = args.swim_period
        config["swim_probe_timeout"] = args.swim_period / 2
    return config


async def wait_stabilised(mesh: Mesh, *, peers: int, timeout: float) -> bool:
    """Wait until every agent of ``mesh`` sees at least ``peers`` others."""
    with trio.move_on_after(timeout):
        for agent in mesh.agents:
            await agent.peers.wait_for_peers(peers)
        return True
    return False


async def run_queries(
    gateway: GatewayAgent, queries: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    routes = []
    for customer_id, query in queries:
        outcome = await gateway.route(query, customer_id)
        routes.append(outcome)
        note = f" (re-routed from {outcome['rerouted_from']})" if "rerouted_from" in outcome else ""
        print(
            f"[{customer_id}] {query}\n    route: {outcome.get('route')}{note}"
            f"\n    resolution: {outcome['resolution']}",
            flush=True,
        )
    return routes


async def run_one_node(args: argparse.Namespace) -> Report:
    """All four agents in this process, in one mesh."""
    report = Report(blob_root=Path(args.blob_root))
    mesh = Mesh(config=mesh_config(args, port=args.port))
    gateway, technical, escalation = GatewayAgent(), TechnicalAgent(), EscalationAgent()
    if args.provider_api:
        technical.provider_api = args.provider_api
    for agent in (gateway, technical, BillingAgent(), escalation):
        mesh.add(agent)
    await mesh.start()
    try:
        report.agents_started = len(mesh.agents)
        report.stabilised = await wait_stabilised(mesh, peers=3, timeout=args.stabilise_timeout)
        if report.stabilised:
            log.info("mesh stabilised, peers=3")
        report.routes = await run_queries(gateway, args.queries)
        report.auth = technical.auth
        report.escalation_records = list(escalation.records)
        report.record_texts = await read_records(gateway, report.escalation_records)
    finally:
        await mesh.stop()
    return report


async def run_agent_process(args: argparse.Namespace) -> int:
    """One agent of the distributed swarm in this process; the gateway drives the queries."""
    role = AGENT_FLAGS[args.agent]
    config = mesh_config(args, port=args.port, seeds=args.seeds)
    mesh = Mesh(config=config)
    crash = role == "billing_support" and args.crash_billing
    agent = mesh.add(CrashingBillingAgent if crash else AGENT_CLASSES[role])
    if isinstance(agent, TechnicalAgent) and args.provider_api:
        agent.provider_api = args.provider_api
    async with mesh:
        # stabilised = this agent sees the other three, and (for the gateway) every
        # specialist has said the same: only then is the whole swarm ready for queries
        with trio.move_on_after(args.stabilise_timeout) as waiting:
            await agent.peers.wait_for_peers(3)
            if isinstance(agent, GatewayAgent):
                await agent.swarm_ready.wait()
            else:
                await agent.peers.notify("gateway", {"event": "ready", "role": role})
        if waiting.cancelled_caught:
            log.error("mesh did not stabilise within %.1f s", args.stabilise_timeout)
            return 1
        log.info("mesh stabilised, peers=3")
        if not isinstance(agent, GatewayAgent):
            assert isinstance(agent, Specialist)
            await agent.released.wait()
            return 0
        assert isinstance(agent, GatewayAgent)
        routes = await run_queries(agent, args.queries)
        outcomes = await _collect_specialist_reports(agent)
        records = outcomes.get("escalation", {}).get("records", [])
        texts = await read_records(agent, records)
        readable = {"gateway": len(texts), **await _read_everywhere(agent, records)}
        await agent.peers.broadcast({"event": "shutdown"})
    report = Report(
        agents_started=4, stabilised=True, routes=routes, blob_root=Path(args.blob_root)
    )
    technical = outcomes.get("technical_support", {})
    report.auth = AuthOutcome(technical.get("state", "not run"), technical.get("detail", ""))
    report.escalation_records = records
    report.record_texts = texts
    report.readable_by = readable
    return print_summary(report, args)


async def _read_everywhere(gateway: GatewayAgent, records: list[str]) -> dict[str, int]:
    """Ask every live specialist's node to read the escalation records back: role -> how
    many it could read (a specialist that is gone, like a crashed billing agent, is left
    out and logged)."""
    counts = {}
    for role in ("technical_support", "billing_support", "escalation"):
        reply = await gateway.peers.request(
            role, {"action": "read_records", "paths": records}, timeout=10
        )
        if not isinstance(reply, dict):
            log.warning("%s did not answer the request to read the records", role)
            continue
        counts[role] = len(reply.get("texts", {}))
    return counts


async def _collect_specialist_reports(gateway: GatewayAgent) -> dict[str, Any]:
    """Ask the technical and escalation agents for their auth outcome and records."""
    reports: dict[str, Any] = {}
    for role in ("technical_support", "escalation"):
        reply = await gateway.peers.request(role, {"action": "report"}, timeout=5)
        if reply:
            reports[role] = reply
    return reports


def print_summary(report: Report, args: argparse.Namespace) -> int:
    expected = {cid: EXPECTED_ROUTES[cid] for cid, _ in args.queries if cid in EXPECTED_ROUTES}
    if args.crash_billing and "cust-002" in expected:
        expected["cust-002"] = "escalation"  # billing died: its query is escalated instead
    criteria = report.criteria(expected)
    width = max(len(name) for name, _, _ in criteria)
    print("\nSuccess criteria")
    for name, ok, detail in criteria:
        print(f"  [{'x' if ok else ' '}] {name.ljust(width)}  {detail}")
    passed = all(ok for _, ok, _ in criteria)
    print(f"\n{'ALL CRITERIA MET' if passed else 'SOME CRITERIA FAILED'}", flush=True)
    return 0 if passed else 1


def launch_distributed(args: argparse.Namespace) -> int:
    """Start the four agents as four OS processes and relay the gateway's exit status.

    The gateway's process listens on ``--port`` and is the seed; the specialists take any
    free ports and join through it.
    """
    if not args.redis_url:
        log.error("--distributed needs Redis mailboxes across processes: set REDIS_URL")
        return 2
    with ExitStack() as stack:
        nexus_url = args.nexus_gateway_url
        if args.nexus_dev and not nexus_url:
            nexus_url = _start_dev_gateway_process(stack)
        common = [
            sys.executable,
            str(ENTRY),
            "--blob-root",
            args.blob_root,
            "--swim-period",
            str(args.swim_period or 0.2),
            "--stabilise-timeout",
            str(args.stabilise_timeout),
        ]
        if nexus_url:
            common += ["--nexus-url", nexus_url]
        if args.provider_api or args.nexus_dev:
            common += ["--provider-api", args.provider_api or f"{nexus_url}/echo"]
        if args.crash_billing:
            common.append("--crash-billing")
        for customer_id, text in args.queries:
            if (customer_id, text) not in TEST_QUERIES:
                common += ["--query", f"{customer_id}:{text}"]
        if args.only_extra:
            common.append("--only-extra")
        env = {**os.environ, "REDIS_URL": args.redis_url}
        gateway = subprocess.Popen(
            [*common, "--agent", "gateway", "--port", str(args.port)], env=env
        )
        specialists = [
            subprocess.Popen(
                [*common, "--agent", flag, "--port", "0", "--seeds", f"127.0.0.1:{args.port}"],
                env=env,
            )
            for flag in ("technical", "billing", "escalation")
        ]
        try:
            return gateway.wait(timeout=args.run_timeout)
        except subprocess.TimeoutExpired:
            log.error("the gateway did not finish within %.0f s", args.run_timeout)  # noqa: TRY400
            gateway.kill()
            return 1
        finally:
            for child in specialists:
                _reap(child)


def _start_dev_gateway_process(stack: ExitStack) -> str:
    """A development Nexus gateway in its own process, consenting on the first poll."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jarvis_trio.testing.nexus_gateway",
            "--port",
            str(port),
            "--auto-consent-after",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    stack.callback(_reap, process, terminate=True)
    assert process.stdout is not None
    banner = process.stdout.readline()  # printed once the server listens
    if "Nexus development gateway on" not in banner:
        raise RuntimeError(f"the development Nexus gateway did not start: {banner!r}")
    url = f"http://127.0.0.1:{port}"
    log.info("development Nexus gateway at %s", url)
    return url


def _reap(child: subprocess.Popen[Any], *, terminate: bool = False, grace: float = 10.0) -> None:
    """Wait for a child (asking it to stop first when ``terminate``), killing it after
    ``grace`` seconds: an example never leaves processes behind."""
    if terminate and child.poll() is None:
        child.terminate()
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="support_swarm.py", description="Customer Support Swarm: four agents, peer to peer."
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="SWIM port of this node")
    parser.add_argument("--seeds", default="", help="comma-separated host:port of seed nodes")
    parser.add_argument("--agent", choices=sorted(AGENT_FLAGS), help="run one agent only")
    parser.add_argument("--distributed", action="store_true", help="four processes, one agent each")
    parser.add_argument(
        "--nexus-dev",
        action="store_true",
        help="start a development Nexus gateway and give consent automatically",
    )
    parser.add_argument(
        "--nexus-url", dest="nexus_gateway_url", default=os.environ.get("NEXUS_GATEWAY_URL")
    )
    parser.add_argument(
        "--provider-api",
        default=None,
        help="URL the technical agent calls through Nexus "
        "(default: GitHub's /user; with --nexus-dev: the gateway's echo API)",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--blob-root", default="blob_storage")
    parser.add_argument("--swim-period", type=float, default=None)
    parser.add_argument("--stabilise-timeout", type=float, default=10.0)
    parser.add_argument("--run-timeout", type=float, default=60.0)
    parser.add_argument(
        "--crash-billing",
        action="store_true",
        help="failure drill: the billing process dies on its first query",
    )
    parser.add_argument(
        "--query",
        action="append",
        default=[],
        metavar="CUSTOMER:TEXT",
        help="an extra query after the four test queries (repeatable)",
    )
    parser.add_argument(
        "--only-extra",
        action="store_true",
        help="run only the --query queries, not the four test queries",
    )
    args = parser.parse_args(argv)
    args.seeds = [s for s in args.seeds.split(",") if s.strip()]
    extra = []
    for item in args.query:
        customer, sep, text = item.partition(":")
        if not sep or not customer.strip() or not text.strip():
            parser.error(f"--query {item!r}: expected CUSTOMER:TEXT")
        extra.append((customer.strip(), text.strip()))
    args.queries = (() if args.only_extra else TEST_QUERIES) + tuple(extra)
    return args


async def async_main(args: argparse.Namespace) -> int:
    async with AsyncExitStack() as stack:
        if args.nexus_dev and not args.nexus_gateway_url:
            args.nexus_gateway_url = await stack.enter_async_context(_dev_gateway())
        if args.nexus_dev and not args.provider_api:
            args.provider_api = f"{args.nexus_gateway_url}/echo"
        if args.agent:
            return await run_agent_process(args)
        report = await run_one_node(args)
    return print_summary(report, args)


@asynccontextmanager
async def _dev_gateway() -> AsyncIterator[str]:
    """A development Nexus gateway on loopback that gives consent on the first poll, as a
    user opening the consent URL at once would."""
    async with serve_nexus_gateway(port=0, auto_consent_after=0) as gateway:
        log.info("development Nexus gateway at %s", gateway.url)
        yield gateway.url


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP call is noise
    args = parse_args(argv)
    if args.distributed:
        return launch_distributed(args)
    return trio.run(async_main, args)
