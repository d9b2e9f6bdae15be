from __future__ import annotations

import subprocess
import sys

import pydantic
import pytest
import yaml

from drivers.bacnet.config import BacnetDevice
from drivers.registry import driver_class
from tests.drivers.bacnet.sim import REPO

EXAMPLE = """
id: chiller-3
driver: bacnet
poll_interval: 5s
timeout: 2s
connection: {local_address: 127.0.0.1/8, local_port: 47809, device_instance: 3001,
  address: "127.0.0.1:47810", max_concurrent: 2, rpm_max_properties: 20, cov: false,
  cov_lifetime: 300s}
points:
  - {id: chws_temp, unit: degC, bacnet: {object: analog-input, instance: 1}}
  - {id: chws_sp, writable: true, limits: {min: 5, max: 12},
     bacnet: {object: analog-value, instance: 10, priority: 8}}
  - {id: run_cmd, kind: binary, writable: true,
     bacnet: {object: binary-output, instance: 1, priority: 8}}
  - {id: status_flags, kind: string,
     bacnet: {object: analog-input, instance: 1, property: status-flags}}
"""


def example(**connection: object) -> dict:
    config = yaml.safe_load(EXAMPLE)
    config["connection"].update(connection)
    return config


def test_the_documented_example_is_valid() -> None:
    device = BacnetDevice.model_validate(example())
    assert device.connection.bind == "127.0.0.1/8:47809"
    assert device.connection.cov_lifetime == 300.0
    assert device.points[0].bacnet.property == "present-value"
    assert device.points[1].bacnet.priority == 8


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        ({"local_address": "127.0.0.1"}, "prefix length"),
        ({"local_address": "eth0/24"}, "IPv4"),
        ({"address": "chiller.local"}, "IPv4"),
        ({"address": "10.0.0.5:99999"}, "bad port"),
        ({"device_instance": 4194303}, "less than or equal"),
        ({"cov_lifetime": "5s"}, "greater than or equal"),
    ],
)
def test_bad_connections_are_refused(connection: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        BacnetDevice.model_validate(example(**connection))


def test_only_present_value_is_writable() -> None:
    config = example()
    config["points"][3]["writable"] = True
    with pytest.raises(pydantic.ValidationError, match="present-value"):
        BacnetDevice.model_validate(config)


def test_registry_knows_the_driver() -> None:
    assert driver_class("bacnet").name == "bacnet"


def test_validating_a_config_does_not_import_bacpypes3() -> None:
    code = (
        "import sys, drivers.registry\n"
        "from drivers.bacnet.config import BacnetDevice\n"
        "print('bacpypes3' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
