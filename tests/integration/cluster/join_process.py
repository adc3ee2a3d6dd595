"""A node that joins through a seed in its own OS process, written as the documentation
shows: ``await mesh.start()``, then at once ``discover()`` and ``request()``.

``python join_process.py trio|asyncio NAME SEEDS [--join-timeout S] [--join-required]``
prints one JSON line on stdout -- ``{"start_s", "joined", "found", "reply"}`` (``found``: the
ids ``discover(role="echo")`` lists right after ``start()``; ``reply``: the answer of the
first echo to a request sent then), or ``{"error", "message", "start_s"}`` when ``start()``
raised -- and logs WARNING and above to stderr, one line each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

import trio

from jarvis_trio import CustomAgent, JarvisError, Mesh


class Scout(CustomAgent):
    role = "scout"

    async def run(self) -> None:
        return None


async def main(args: argparse.Namespace) -> int:
    config: dict[str, Any] = {
        "p2p_enabled": True,
        "bind_host": "127.0.0.1",
        "bind_port": 0,
        "node_name": args.name,
        "seed_nodes": args.seeds,
        "join_timeout": args.join_timeout,
        "join_required": args.join_required,
        "swim_period": 0.1,
        "swim_probe_timeout": 0.05,
        "blob_storage_path": args.blob,
    }
    mesh = Mesh(config, env_file=None, environ={})
    scout = mesh.add(Scout)
    began = time.perf_counter()
    try:
        await mesh.start()
    except JarvisError as exc:
        failed = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps({**failed, "start_s": time.perf_counter() - began}), flush=True)
        return 1
    start_s = time.perf_counter() - began
    try:
        found = [peer.agent_id for peer in scout.peers.discover(role="echo")]
        reply = await scout.peers.request("echo", {"from": args.name}, timeout=5)
        outcome = {"start_s": start_s, "joined": mesh.joined, "found": found, "reply": reply}
        print(json.dumps(outcome), flush=True)
    finally:
        await mesh.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("host", choices=["trio", "asyncio"])
    parser.add_argument("name")
    parser.add_argument("seeds")
    parser.add_argument("--join-timeout", type=float, default=5.0)
    parser.add_argument("--join-required", action="store_true")
    parser.add_argument("--blob", default="blob_storage")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if arguments.host == "trio":
        sys.exit(trio.run(main, arguments))
    sys.exit(asyncio.run(main(arguments)))
