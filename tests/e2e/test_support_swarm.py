"""The Customer Support Swarm example, run as a user runs it: a subprocess, checked by its
output, its exit status and the records it leaves behind."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import trio

from jarvis_trio.storage.blob import BlobStorage
from jarvis_trio.storage.blob_s3 import S3Backend
from jarvis_trio.testing.ports import free_port, free_swim_port
from jarvis_trio.testing.redis_cluster import RedisClusterServers
from jarvis_trio.testing.redis_server import RedisServer
from jarvis_trio.testing.s3_server import MotoS3Server

from .cli_cluster import clean_env, python

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_swarm.py"
EXPECTED_ROUTES = {
    "cust-001": "technical_support",
    "cust-002": "billing_support",
    "cust-003": "escalation",
    "cust-004": "technical_support",
}


def run_example(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    port = str(free_swim_port())
    result = python(str(EXAMPLE), "--port", port, *args, cwd=tmp_path, env=env, timeout=timeout)
    print(result.stdout)
    print(result.stderr, file=sys.stderr)
    return result


def routes_in(output: str) -> dict[str, str]:
    """customer id -> the route the gateway printed for it."""
    found = re.findall(r"\[(cust-\d+)\] .*\n\s+route: (\S+)", output)
    return dict(found)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("ERROR") or " ERROR " in line]


def escalation_records(root: Path) -> list[Path]:
    return sorted((root / "blob_storage" / "escalations" / "support-swarm").glob("*.txt"))


def assert_record_format(record: Path, customer_id: str) -> None:
    lines = record.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4, lines
    assert re.fullmatch(r"ESCALATION #\d+", lines[0])
    assert lines[1] == f"Customer: {customer_id}"
    assert lines[2].startswith("Query: ")
    assert re.fullmatch(r"Timestamp: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", lines[3])


def assert_swarm_succeeded(result: subprocess.CompletedProcess[str], tmp_path: Path) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "mesh stabilised, peers=3" in output
    assert routes_in(output) == EXPECTED_ROUTES
    assert output.count("resolution: ") == 4
    assert "ALL CRITERIA MET" in output
    assert error_lines(output) == []
    records = escalation_records(tmp_path)
    assert len(records) == 1
    assert_record_format(records[0], "cust-003")
    return output


def test_embedded_defaults_run_the_swarm_and_degrade_auth_with_a_warning(tmp_path: Path) -> None:
    output = assert_swarm_succeeded(run_example(tmp_path), tmp_path)
    warnings = [line for line in output.splitlines() if line.startswith("WARNING")]
    assert any("NEXUS_GATEWAY_URL" in line for line in warnings), warnings
    assert re.search(r"\[x\] technical agent completes or degrades .*\s+degraded", output)


def test_nexus_dev_gateway_completes_the_auth_flow(tmp_path: Path) -> None:
    output = assert_swarm_succeeded(run_example(tmp_path, "--nexus-dev"), tmp_path)
    assert re.search(r"completed: conn-[0-9a-f]{8,}", output), output
    assert "provider account verified through Nexus connection" in output
    assert "NEXUS_GATEWAY_URL" not in output


def test_redis_url_at_a_closed_port_falls_back_in_process(tmp_path: Path) -> None:
    closed = free_port()
    env = clean_env(REDIS_URL=f"redis://127.0.0.1:{closed}/0")
    output = assert_swarm_succeeded(run_example(tmp_path, env=env), tmp_path)
    warnings = [line for line in output.splitlines() if line.startswith("WARNING")]
    assert any(str(closed) in line for line in warnings), warnings


@pytest.mark.redis
def test_redis_mailboxes(tmp_path: Path, redis_server: RedisServer) -> None:
    env = clean_env(REDIS_URL=redis_server.url)
    output = assert_swarm_succeeded(run_example(tmp_path, env=env), tmp_path)
    assert "redis mailboxes" in output.lower()


def test_two_escalations_in_one_second_are_both_kept(tmp_path: Path) -> None:
    slow = "cust-009:The dashboard is slow"
    extra = ["--query", slow, "--query", slow]
    result = run_example(tmp_path, "--only-extra", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    records = escalation_records(tmp_path)
    assert len(records) == 2
    for record in records:
        assert_record_format(record, "cust-009")
    assert records[0].read_text() != records[1].read_text()


def distributed(tmp_path: Path, redis: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run_example(
        tmp_path,
        "--distributed",
        "--nexus-dev",
        *args,
        env=clean_env(REDIS_URL=redis.url),
        timeout=90,
    )


@pytest.mark.redis
def test_four_processes_form_the_swarm(tmp_path: Path, redis_server: RedisServer) -> None:
    result = distributed(tmp_path, redis_server)
    output = assert_swarm_succeeded(result, tmp_path)
    assert output.count("mesh stabilised, peers=3") == 4
    assert re.search(r"completed: conn-[0-9a-f]{8,}", output), output


@pytest.mark.redis
def test_killing_billing_reroutes_its_query(tmp_path: Path, redis_server: RedisServer) -> None:
    result = distributed(tmp_path, redis_server, "--crash-billing")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    routes = routes_in(output)
    assert routes["cust-002"] == "escalation"
    assert "re-routed from billing_support" in output
    assert {k: v for k, v in routes.items() if k != "cust-002"} == {
        k: v for k, v in EXPECTED_ROUTES.items() if k != "cust-002"
    }


def test_scout_example(tmp_path: Path) -> None:
    scout = EXAMPLE.parent / "scout.py"
    result = subprocess.run(
        [sys.executable, str(scout)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "analyst received data_ready" in output
    assert "validation" in output
    assert error_lines(output) == []


@pytest.mark.redis
def test_four_processes_on_a_redis_cluster_with_blobs_on_s3(
    tmp_path: Path, redis_cluster: RedisClusterServers, s3_server: MotoS3Server
) -> None:
    """Mailboxes on a 3-master Redis Cluster, blobs on S3: the escalation record written by
    one process is read back by all four."""
    prefix = f"swarm-{uuid.uuid4().hex[:8]}"
    env = clean_env(
        REDIS_URL=redis_cluster.url,
        JC_BLOB_STORAGE_URL=f"s3://jarvis-test/{prefix}",
        **s3_server.environ(),
    )
    result = run_example(tmp_path, "--distributed", "--nexus-dev", env=env, timeout=90)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("mesh stabilised, peers=3") == 4
    assert routes_in(output) == EXPECTED_ROUTES
    assert "ALL CRITERIA MET" in output
    assert re.search(
        r"\[x\] escalation records readable from every node\s+"
        r"billing_support 1, escalation 1, gateway 1, technical_support 1",
        output,
    ), output
    assert escalation_records(tmp_path) == []  # nothing on the local disk
    store = BlobStorage(
        backend=S3Backend(f"s3://jarvis-test/{prefix}", environ=s3_server.environ())
    )
    (record,) = trio.run(store.list, "escalations/support-swarm/")
    text = trio.run(store.read_text, record)
    assert text.startswith("ESCALATION #1\nCustomer: cust-003\n")
