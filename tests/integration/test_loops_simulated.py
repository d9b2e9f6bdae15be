"""The shipped control loops and equipment protection running in the agent against the
simulated plant: automatic writes, manual overrides that win, safe states, protection."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import AgentProcess, run_cli, wait_until
from tests.plant_rig import running_plant

CMD = "t/demo-hospital/plantroom-b2/cmd"


def _fast_loops(config: dict) -> None:
    """The shipped loops, on test time: steps every second, no start-up delay."""
    for loop in config["loops"]:
        loop["period"] = 1.0
        if loop["type"] == "chw_reset":
            loop.update(delay=0.0, time_step=1.0)


@pytest.fixture
def plant(tmp_path: Path, broker) -> Iterator[tuple[AgentProcess, Path]]:
    with running_plant(tmp_path, broker.port, adjust=_fast_loops) as running:
        yield running


def _loops(agent: AgentProcess) -> dict[str, dict]:
    return {loop["id"]: loop for loop in agent.request("loops")["loops"]}


def _loops_table(agent: AgentProcess) -> list[str]:
    """`edge-agent loops` as the technician's terminal shows it (wide enough for a row)."""
    result = run_cli("loops", "--socket", str(agent.socket), env={**os.environ, "COLUMNS": "220"})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_loops_write_at_auto_and_a_manual_override_wins(plant, platform):
    agent, _faults = plant
    wait_until(lambda: agent.holder("plant.cws_setpoint") == "auto", 40, "the condenser loop")
    wait_until(lambda: agent.holder("plant.chws_setpoint") == "auto", 40, "the CHW reset loop")
    modes = {name: lp["mode"] for name, lp in _loops(agent).items()}
    assert modes == {"chw-reset": "auto", "cw-approach": "auto", "plant-optimizer": "disabled"}
    socket = str(agent.socket)
    cli = run_cli("write", "plant.chws_setpoint", "7.2", "--for", "10m", "--socket", socket)
    assert cli.returncode == 0, cli.stderr
    wait_until(lambda: _loops(agent)["chw-reset"]["mode"] == "overridden", 10, "overridden mode")
    for _ in range(5):  # several loop periods: the technician's value stays
        time.sleep(1)
        value = agent.request("points", device="plant")["points"]["plant.chws_setpoint"]
        assert value["value"] == pytest.approx(7.2)
    assert agent.holder("plant.chws_setpoint") == "manual"
    assert run_cli("release", "plant.chws_setpoint", "--socket", socket).returncode == 0
    wait_until(lambda: _loops(agent)["chw-reset"]["mode"] == "auto", 15, "back to auto")
    wait_until(lambda: agent.holder("plant.chws_setpoint") == "auto", 15, "the loop writing again")
    status = run_cli("status", "--socket", socket).stdout
    assert "chw-reset" in status and "cw-approach" in status


def test_lost_inputs_put_a_loop_in_its_safe_state(plant, platform):
    agent, faults = plant
    wait_until(lambda: _loops(agent)["cw-approach"]["mode"] == "auto", 40, "the condenser loop")
    faults.write_text(json.dumps({"modbus": {"plant-plc": {"2": {"offline": True}}}}))
    # The weather station goes silent: stale after 3 polls (30 s each), then safe at the
    # next step of the loop.
    wait_until(lambda: _loops(agent)["cw-approach"]["mode"] == "safe", 150, "the safe state")
    assert platform.wait_for(
        lambda p: any(m.body.get("type") == "loop_safe_state" for m in p.messages), 10
    )
    faults.write_text("{}")
    wait_until(lambda: _loops(agent)["cw-approach"]["mode"] == "auto", 90, "recovery")


@pytest.fixture
def quick_standby(tmp_path: Path, broker) -> Iterator[tuple[AgentProcess, Path]]:
    """The shipped plant, with the standby chiller's minimum off time on test time."""

    def adjust(config: dict) -> None:
        _fast_loops(config)
        for guard in config["protection"]:
            if guard["id"] == "chiller-3":
                guard["min_off"] = 5.0

    with running_plant(tmp_path, broker.port, adjust=adjust) as running:
        yield running


def test_protection_holds_on_a_fresh_gateway_and_through_a_release(quick_standby, platform):
    agent, _faults = quick_standby

    def send(command_id: str, point: str, **body) -> dict:
        platform.send(CMD, json.dumps({"v": 1, "id": command_id, "point": point, **body}))
        finals = ("rejected", "done", "failed")
        assert platform.wait_for(
            lambda p: any(a["stage"] in finals for a in p.acks(command_id)), 20
        ), platform.acks(command_id)
        return platform.acks(command_id)[-1]

    def write(command_id: str, point: str, value: bool) -> dict:
        return send(command_id, point, type="write", value=value)

    # A fresh gateway (no protection history): chiller-1 has been running since before the
    # agent started, so it is taken to have just started, and its minimum on time holds.
    stop = write("stop", "chiller-1.enable", False)
    assert stop["reason"] == "protection" and "minimum on time" in stop["message"], stop
    cli = run_cli("write", "chiller-1.enable", "false", "--socket", str(agent.socket))
    assert cli.returncode == 4 and "protection" in cli.stderr  # nor may the technician
    assert agent.request("points", device="chiller-1")["points"]["chiller-1.enable"]["value"]

    # The standby (BACnet) was found stopped: it may start once its minimum off time is
    # over and the loop has flow, and then runs its minimum on time.
    plant_points = lambda: agent.request("points", device="plant")["points"]  # noqa: E731
    wait_until(
        lambda: plant_points().get("plant.chw_flow", {}).get("value"), 30, "the plant's flow"
    )
    early = write("start-3-early", "chiller-3.enable", True)
    assert early["reason"] == "protection" and "minimum off time" in early["message"], early
    attempts = itertools.count()  # the timer runs from when the agent first saw it stopped
    wait_until(
        lambda: write(f"start-3-{next(attempts)}", "chiller-3.enable", True)["stage"] == "done",
        30,
        "the start allowed after the minimum off time",
    )
    stop = write("stop-3", "chiller-3.enable", False)
    assert stop["reason"] == "protection" and "minimum on time" in stop["message"], stop

    # The release that stopped it anyway (its priority relinquished, the device's
    # default took over): now it keeps the hold until the stop is allowed.
    release = send("release-3", "chiller-3.enable", type="release")
    assert release["stage"] == "done", release
    assert release["result"]["pending"] is True, release
    assert "minimum on time" in release["result"]["protection"]
    time.sleep(8)
    chiller = agent.request("points", device="chiller-3")["points"]
    assert chiller["chiller-3.enable"]["value"] is True
    assert chiller["chiller-3.run_status"]["value"] is True
    assert agent.holder("chiller-3.enable") == "platform"
    assert platform.wait_for(
        lambda p: any(
            m.body.get("type") == "hold_end_deferred" and m.body["point"] == "chiller-3.enable"
            for m in p.messages
        ),
        10,
    )


def test_the_platform_disables_sets_and_enables_a_loop(plant, platform):
    agent, _faults = plant
    wait_until(lambda: agent.holder("plant.cws_setpoint") == "auto", 40, "the condenser loop")

    def send(command_id: str, **body) -> dict:
        platform.send(CMD, json.dumps({"v": 1, "id": command_id, "type": "loop", **body}))
        finals = ("rejected", "done", "failed")
        assert platform.wait_for(
            lambda p: any(a["stage"] in finals for a in p.acks(command_id)), 20
        ), platform.acks(command_id)
        return platform.acks(command_id)[-1]

    assert send("off", loop="cw-approach", action="disable")["stage"] == "done"
    assert _loops(agent)["cw-approach"]["mode"] == "disabled"
    # Disabling releases the loop's hold: the plant controller keeps its own setpoint.
    wait_until(lambda: agent.holder("plant.cws_setpoint") is None, 10, "the hold released")
    assert send("nope", loop="no-such-loop", action="enable")["reason"] == "unknown_loop"
    # The platform's decision outlives a restart (a power cut must not re-enable the loop).
    assert agent.stop() == 0
    agent.start().wait_commands()
    assert _loops(agent)["cw-approach"]["mode"] == "disabled"
    time.sleep(3)  # a period of the fast loops: it still writes nothing
    assert agent.holder("plant.cws_setpoint") is None
    # The technician sees who did it, and what the other loop writes.
    row = next(line for line in _loops_table(agent) if "cw-approach" in line)
    assert "disabled" in row and "platform" in row, row
    wait_until(lambda: _loops(agent)["chw-reset"]["written"], 60, "the CHW reset writing")
    row = next(line for line in _loops_table(agent) if "chw-reset" in line)
    assert "auto" in row and "plant.chws_setpoint = " in row, row
    assert send("on", loop="cw-approach", action="enable")["stage"] == "done"
    # Once the restarted agent has read the wet bulb (a slow poll) the loop writes again.
    wait_until(lambda: agent.holder("plant.cws_setpoint") == "auto", 60, "writing again")


def test_the_simple_loops_stand_by_while_the_optimizer_runs(tmp_path, broker, platform):
    def fast_optimizer(config: dict) -> None:
        _fast_loops(config)
        for loop in config["loops"]:
            if loop["id"] == "plant-optimizer":
                loop.update(min_samples=0, sequence_step=1.0, stage_hold=600.0)

    with running_plant(tmp_path, broker.port, adjust=fast_optimizer) as (agent, _faults):
        wait_until(lambda: agent.holder("plant.chws_setpoint") == "auto", 40, "chw-reset")

        def loop_command(command_id: str, action: str) -> None:
            platform.send(
                CMD,
                json.dumps(
                    {
                        "v": 1,
                        "id": command_id,
                        "type": "loop",
                        "loop": "plant-optimizer",
                        "action": action,
                    }
                ),
            )
            assert platform.wait_for(
                lambda p: any(a["stage"] == "done" for a in p.acks(command_id)), 20
            ), platform.acks(command_id)

        def holder_loop(ref: str) -> str | None:
            hold = agent.request("points", device=ref.split(".")[0])["holds"].get(ref)
            return hold and hold["by"]

        loop_command("opt-on", "enable")
        wait_until(lambda: _loops(agent)["chw-reset"]["mode"] == "standby", 60, "standby")
        assert _loops(agent)["cw-approach"]["mode"] == "standby"
        wait_until(lambda: holder_loop("plant.chws_setpoint") == "plant-optimizer", 30,
              "the optimizer writing the supply setpoint")  # fmt: skip
        loop_command("opt-off", "disable")
        wait_until(lambda: holder_loop("plant.chws_setpoint") == "chw-reset", 30,
              "chw-reset taking the setpoint back")  # fmt: skip
        assert _loops(agent)["chw-reset"]["mode"] == "auto"
