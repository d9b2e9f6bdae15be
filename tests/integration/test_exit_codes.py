"""The exit codes of the technician's commands, as a script sees them (docs/field-tools.md).

One running agent with a fake device whose control file makes it fall silent; every code
of the table comes from the real CLI entry point.
"""

from __future__ import annotations

import json

import pytest

from edge_agent import exit_codes
from tests.harness import AgentProcess, fake_device, run_cli, site_config, wait_until


@pytest.fixture
def agent(tmp_path, broker, agents) -> AgentProcess:
    device = fake_device("ahu-1", n_points=2, interval=0.2)
    device["connection"] = {"control_file": str(tmp_path / "faults.json")}
    device["points"] += [
        {"id": "sp", "unit": "degC", "writable": True, "limits": {"min": -10, "max": 12},
         "min_write_interval": 0, "signal": {"mode": "constant", "value": 7.0}},
    ]  # fmt: skip
    process = AgentProcess(tmp_path, site_config(tmp_path, broker.port, [device]))
    agents.append(process.start())
    process.wait_ready()
    return process


def test_each_outcome_has_its_own_exit_code(agent, tmp_path):
    socket = ("--socket", str(agent.socket))

    done = run_cli("write", "ahu-1.sp", "-5", *socket)  # a negative value needs no `--`
    assert done.returncode == exit_codes.OK, done.stderr
    assert "ahu-1.sp = -5" in done.stdout
    negative_float = run_cli("write", "ahu-1.sp", "-2.5", "--for", "10m", *socket)
    assert negative_float.returncode == exit_codes.OK, negative_float.stderr

    usage = run_cli("write", "ahu-1.sp", "1", "--bogus", *socket)  # a typo is not a value
    assert usage.returncode == exit_codes.USAGE
    assert "No such option '--bogus'" in usage.stderr
    both = run_cli("write", "ahu-1.sp", "1", "--for", "1h", "--permanent", *socket)
    assert both.returncode == exit_codes.USAGE, both.stderr

    rejected = run_cli("write", "ahu-1.sp", "-40", *socket)
    assert rejected.returncode == exit_codes.REJECTED
    assert rejected.stderr.startswith("rejected (out_of_limits)")
    unknown = run_cli("write", "ahu-1.nothing", "1", *socket)
    assert unknown.returncode == exit_codes.REJECTED and "unknown_point" in unknown.stderr

    (tmp_path / "faults.json").write_text(json.dumps({"offline": True}))
    wait_until(
        lambda: agent.request("status")["devices"]["ahu-1"]["up"] is False, 15,
        "the device to be seen offline",
    )  # fmt: skip
    failed = run_cli("write", "ahu-1.sp", "3", "--json", *socket)
    assert failed.returncode == exit_codes.FAILED, failed.stdout + failed.stderr
    assert json.loads(failed.stdout)[-1]["reason"] == "device_unavailable"

    assert agent.stop() == 0
    gone = run_cli("write", "ahu-1.sp", "3", *socket)
    assert gone.returncode == exit_codes.NOT_RUNNING and "not running" in gone.stderr


def test_the_codes_are_distinct_and_documented():
    from tests.harness import REPO

    codes = {
        name: value
        for name, value in vars(exit_codes).items()
        if name.isupper() and isinstance(value, int)
    }
    assert len(set(codes.values())) == len(codes), codes
    table = (REPO / "docs" / "field-tools.md").read_text()
    for value in codes.values():
        assert f"\n| {value} |" in table, f"exit code {value} is not in docs/field-tools.md"
