"""What a new configuration changes (edge_agent/reload.py): the plan the runtime follows on
SIGHUP and config_apply, and the guard that lets a device restart under the router."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.base import DeviceUnavailable, Link
from drivers.registry import driver_class
from edge_agent import reload
from edge_agent.config.loader import load_config_text
from edge_agent.config.models import AgentConfig
from tests.harness import fake_device, site_config


def _site(tmp_path: Path) -> dict[str, Any]:
    devices = [
        fake_device("ahu-1", link="bus-1"),
        fake_device("ahu-2", link="bus-1"),
        fake_device("meter"),
    ]
    return site_config(tmp_path, 1883, devices, links=[{"id": "bus-1", "gap": 0}])


def _load(site: dict[str, Any]) -> AgentConfig:
    return load_config_text(yaml.safe_dump(site, sort_keys=False), "site.yaml")


def _changed(site: dict[str, Any], device: str, **fields: Any) -> dict[str, Any]:
    new = copy.deepcopy(site)
    for d in new["devices"]:
        if d["id"] == device:
            d.update(fields)
    return new


def test_at_start_everything_starts(tmp_path):
    plan = reload.plan(None, _load(_site(tmp_path)))
    assert plan.start == ("ahu-1", "ahu-2", "meter") and plan.stop == ()
    assert plan.control and plan.uplink and plan.local and plan.metrics


def test_the_same_configuration_changes_nothing(tmp_path):
    site = _site(tmp_path)
    plan = reload.plan(_load(site), _load(site))
    assert plan == reload.Plan((), (), False, False, False, False, False)


def test_a_poll_interval_restarts_that_device_under_the_running_command_layer(tmp_path):
    site = _site(tmp_path)
    plan = reload.plan(_load(site), _load(_changed(site, "ahu-1", poll_interval=0.3)))
    assert plan.restarted == ["ahu-1"] and not plan.started + plan.stopped
    assert not plan.control and not plan.alarms and not plan.local and not plan.metrics
    assert not plan.uplink  # the connection stays (and announces the new config_hash)


def test_new_uplink_settings_reconnect(tmp_path):
    site = _site(tmp_path)
    new = copy.deepcopy(site)
    new["uplink"]["flush_timeout"] = 7
    plan = reload.plan(_load(site), _load(new))
    assert plan.uplink and plan.start == plan.stop == () and not plan.control


def test_what_the_router_reads_of_a_device_rebuilds_the_command_layer(tmp_path):
    site = _site(tmp_path)
    plan = reload.plan(_load(site), _load(_changed(site, "meter", timeout=0.03)))
    assert plan.restarted == ["meter"] and plan.control  # the write timeout is the device's


def test_a_link_gap_restarts_every_device_on_the_link_and_no_other(tmp_path):
    site = _site(tmp_path)
    new = copy.deepcopy(site)
    new["links"] = [{"id": "bus-1", "gap": 0.01}]
    plan = reload.plan(_load(site), _load(new))
    assert plan.restarted == ["ahu-1", "ahu-2"] and not plan.control


def test_a_device_added_and_one_removed(tmp_path):
    site = _site(tmp_path)
    new = copy.deepcopy(site)
    new["devices"] = [*new["devices"][1:], fake_device("pump")]
    plan = reload.plan(_load(site), _load(new))
    assert plan.started == ["pump"] and plan.stopped == ["ahu-1"] and plan.restarted == []
    assert plan.control  # the router knows the points of the devices there are


def test_a_disabled_device_stops(tmp_path):
    site = _site(tmp_path)
    plan = reload.plan(_load(site), _load(_changed(site, "ahu-2", enabled=False)))
    assert plan.stopped == ["ahu-2"] and plan.start == ()


def test_new_alarm_rules_rebuild_the_alarm_engine_only(tmp_path):
    site = _site(tmp_path)
    new = copy.deepcopy(site)
    new["alarms"] = [{"id": "warm", "type": "high", "point": "meter.a0", "limit": 30}]
    plan = reload.plan(_load(site), _load(new))
    assert plan.alarms and not plan.control and plan.start == plan.stop == ()


def test_the_store_and_the_identity_need_a_new_runtime(tmp_path):
    site = _site(tmp_path)
    old = _load(site)
    assert not reload.restarts_runtime(old, _load(_changed(site, "ahu-1", poll_interval=1)))
    moved = copy.deepcopy(site)
    moved["store"]["path"] = str(tmp_path / "elsewhere.db")
    assert reload.restarts_runtime(old, _load(moved))
    renamed = copy.deepcopy(site)
    renamed["gateway"] = {"id": "gw2"}
    assert reload.restarts_runtime(old, _load(renamed))


async def test_a_retired_guard_lets_a_write_under_way_finish_then_refuses(tmp_path):
    device = _load(site_config(tmp_path, 1883, [_writable("ahu-1")])).devices[0]
    driver = driver_class(device.driver)(device, Link("ahu-1"))
    await driver.open()
    guard = reload.guard(driver)
    point = next(p for p in device.points if p.id == "valve")
    writing = asyncio.create_task(guard.write(point, 40.0))
    await asyncio.sleep(0)  # the write is under way (the fake device answers in 0.2 s)
    retiring = asyncio.create_task(guard.retire(5.0))
    await asyncio.sleep(0.05)
    assert not retiring.done()  # waits for the write
    assert (await writing).value == 40.0
    await asyncio.wait_for(retiring, 1)
    with pytest.raises(DeviceUnavailable, match="restarting"):
        await guard.read(device.points)
    await driver.close()


def _writable(device_id: str) -> dict[str, Any]:
    device = fake_device(device_id, interval=1, connection={"latency": 0.2})
    device["points"].append(
        {"id": "valve", "writable": True, "limits": {"min": 0, "max": 100}, "signal": {"value": 0}}
    )
    return device
