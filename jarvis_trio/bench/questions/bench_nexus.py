"""Nexus flow against the development gateway on loopback.

Questions: how long ``get_connection_id`` takes with the gateway polled every 50 ms and consent
arriving after 2 polls (target <= 300 ms; the floor is two poll intervals, ~100 ms), and how
much a proxied call with a cached token adds over a plain httpx call carrying the same header
to the same echo endpoint (target <= 1 ms). Both calls are measured interleaved in one run and
compared by their medians.
"""

from __future__ import annotations

import time

import httpx
import trio

from jarvis_trio.auth import AuthSettings, NexusCallProxy, open_auth_manager
from jarvis_trio.bench.results import Result, median, step
from jarvis_trio.config import MeshConfig
from jarvis_trio.testing.nexus_gateway import serve_nexus_gateway


async def _measure(flows: int, calls: int) -> tuple[list[float], list[float], list[float]]:
    flow_times: list[float] = []
    plain: list[float] = []
    proxied: list[float] = []
    async with serve_nexus_gateway(auto_consent_after=2) as gw:
        config = MeshConfig.load({"nexus_gateway_url": gw.url}, environ={}, env_file=None)
        settings = AuthSettings(poll_interval=0.05, user_id="bench", consent_handler=_quiet)
        async with open_auth_manager(config, settings=settings) as manager:
            assert manager is not None
            for i in range(flows):
                started = time.perf_counter()
                cid = await manager.get_connection_id(f"provider-{i}")
                flow_times.append(time.perf_counter() - started)
            proxy = NexusCallProxy(cid, manager=manager)
            strategy = await manager.get_token(cid)
            url = gw.url + "/echo"
            async with httpx.AsyncClient() as client:
                for _ in range(20):  # warm both connection pools
                    await client.get(url, headers=dict(strategy.headers))
                    await proxy.get(url)
                for _ in range(calls):
                    started = time.perf_counter()
                    answer = await client.get(url, headers=dict(strategy.headers))
                    answer.json()
                    plain.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    result = await proxy.get(url)
                    proxied.append(time.perf_counter() - started)
                    assert result["ok"], result
    return flow_times, plain, proxied


async def _quiet(prompt: object) -> None:
    """Consent arrives by itself (auto-consent); nothing to print."""


def run(quick: bool) -> list[Result]:
    flows, calls = (5, 300) if quick else (15, 2000)
    step(f"{flows} consent flows, then {calls} proxied calls")
    flow_times, plain, proxied = trio.run(_measure, flows, calls)
    flow_ms = median(flow_times) * 1000
    plain_ms = median(plain) * 1000
    proxied_ms = median(proxied) * 1000
    overhead = proxied_ms - plain_ms
    return [
        Result(
            "Nexus get_connection_id (poll 50 ms, consent after 2 polls)",
            flow_ms,
            "ms",
            "<= 300 ms",
            flow_ms <= 300,
            f"median of {flows} flows",
        ),
        Result(
            "Nexus proxied call overhead vs plain httpx (cached token)",
            overhead,
            "ms",
            "<= 1 ms",
            overhead <= 1.0,
            f"medians of {calls}: plain {plain_ms:.3f} ms, proxied {proxied_ms:.3f} ms",
            samples=tuple(t * 1000 for t in proxied),
            sample_unit="ms",
        ),
    ]


if __name__ == "__main__":
    from jarvis_trio.bench.results import format_table

    print(format_table(run(quick=False)))
