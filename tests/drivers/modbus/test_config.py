"""Config models: defaults, Modicon conversion and cross-field errors with clear messages."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from drivers.modbus.config import ModbusAddress, ModbusDevice, ModbusPoint
from tests.drivers.modbus.conftest import PLANT, device


def point(**fields: object) -> ModbusPoint:
    return ModbusPoint.model_validate({"id": "p", **fields})


def error(**fields: object) -> str:
    with pytest.raises(ValidationError) as info:
        point(**fields)
    return str(info.value)


def test_the_plant_map_validates() -> None:
    dev = device(5020)
    assert len(dev.points) == len(PLANT)
    assert dev.retries == 1 and dev.max_gap_registers == 8 and dev.max_block_registers == 125
    assert dev.max_block_bits == 2000 and not dev.fc16_only


@pytest.mark.parametrize(
    ("address", "table", "protocol"),
    [
        (30010, "input", 9),
        (30001, "input", 0),
        (40001, "holding", 0),
        (49999, "holding", 9998),
        (10004, "discrete", 3),
        (300010, "input", 9),
        (465536, "holding", 65535),
        (100001, "discrete", 0),
    ],
)
def test_modicon_references_become_protocol_addresses(
    address: int, table: str, protocol: int
) -> None:
    spec = ModbusAddress.model_validate({"address": address})
    assert (spec.table, spec.address) == (table, protocol)


def test_converted_addresses_survive_a_dump_and_reload() -> None:
    # 410002 is holding 10001, which read again as Modicon would be discrete input 0.
    spec = ModbusAddress.model_validate({"address": 410002})
    assert (spec.table, spec.address, spec.modicon) == ("holding", 10001, False)
    assert ModbusAddress.model_validate(spec.model_dump()) == spec


def test_modicon_with_the_same_table_is_accepted() -> None:
    spec = ModbusAddress.model_validate({"table": "input", "address": 30010})
    assert (spec.table, spec.address) == ("input", 9)


def test_modicon_conflicting_with_the_table_is_an_error() -> None:
    message = error(modbus={"table": "holding", "address": 30010})
    assert "Modicon notation for input register 9" in message and "'holding'" in message


def test_modicon_false_keeps_a_high_protocol_address() -> None:
    spec = ModbusAddress.model_validate({"table": "holding", "address": 40100, "modicon": False})
    assert (spec.table, spec.address) == ("holding", 40100)


def test_low_addresses_are_protocol_addresses_and_need_a_table() -> None:
    assert "table is required" in error(modbus={"address": 5})
    spec = ModbusAddress.model_validate({"table": "coil", "address": 5})
    assert (spec.table, spec.address, spec.type) == ("coil", 5, "bool")


def test_default_register_type_is_uint16() -> None:
    assert ModbusAddress.model_validate({"table": "holding", "address": 1}).type == "uint16"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"modbus": {"table": "coil", "address": 0, "type": "float32"}}, "type float32 is not"),
        ({"modbus": {"table": "holding", "address": 0, "type": "bool"}}, "type bool needs a coil"),
        ({"modbus": {"table": "holding", "address": 0, "bit": 3}, "kind": "analog"}, "needs kind"),
        (
            {"modbus": {"table": "holding", "address": 0, "type": "uint16", "bit": 3}},
            "bit (0-15) is required with type bit",
        ),
        (
            {"kind": "binary", "modbus": {"table": "holding", "address": 0, "type": "bit"}},
            "bit (0-15) is required with type bit",
        ),
        ({"modbus": {"table": "holding", "address": 0, "type": "bit", "bit": 16}}, "less than"),
        (
            {"kind": "string", "modbus": {"table": "holding", "address": 0, "type": "string"}},
            "length",
        ),
        ({"modbus": {"table": "holding", "address": 0, "length": 4}}, "length (in registers)"),
        (
            {"writable": True, "modbus": {"table": "input", "address": 0}},
            "a input table cannot be written",
        ),
        (
            {"writable": True, "kind": "binary", "modbus": {"table": "discrete", "address": 0}},
            "a discrete table cannot be written",
        ),
        ({"modbus": {"table": "holding", "address": 65535, "type": "float32"}}, "goes past 65535"),
        ({"modbus": {"table": "holding", "address": -1}}, "greater than or equal to 0"),
        (
            {"kind": "binary", "scale": 2, "modbus": {"table": "coil", "address": 0}},
            "scale and offset apply to numbers",
        ),
        ({"kind": "string", "modbus": {"table": "holding", "address": 0}}, "does not fit"),
        ({"modbus": {"table": "holding", "address": 0, "type": "float16"}}, "type"),
        ({"modbus": {"table": "holding", "address": 0, "word_order": "middle"}}, "word_order"),
    ],
)
def test_cross_field_errors(fields: dict, expected: str) -> None:
    assert expected in error(**fields)


def test_connections() -> None:
    rtu = ModbusDevice.model_validate(
        {
            "id": "d",
            "driver": "modbus",
            "connection": {"transport": "rtu", "port": "/dev/ttyUSB0", "unit": 3, "parity": "E"},
            "points": [PLANT[0]],
        }
    )
    assert rtu.connection.baudrate == 9600 and rtu.connection.parity == "E"
    with pytest.raises(ValidationError, match="transport"):
        ModbusDevice.model_validate(
            {
                "id": "d",
                "driver": "modbus",
                "connection": {"transport": "ascii", "port": "/dev/ttyS0"},
                "points": [PLANT[0]],
            }
        )
    with pytest.raises(ValidationError, match="less than or equal to 247"):
        device(1, unit=1).model_validate(
            {**device(1).model_dump(), "connection": {"transport": "rtu", "port": "x", "unit": 248}}
        )


def test_a_block_limit_smaller_than_a_value_is_an_error() -> None:
    with pytest.raises(ValidationError, match="does not fit max_block_registers"):
        device(1, max_block_registers=2, points=[PLANT[8]])  # float64: 4 registers


def test_validating_a_config_imports_no_pymodbus() -> None:
    code = (
        "import sys; from edge_agent.config.models import AgentConfig; "
        "import drivers.modbus; assert 'pymodbus' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


SITE = """\
site: {id: s}
gateway: {id: g}
uplink: {endpoints: [{host: 127.0.0.1}]}
links:
  - {id: rs485-1, gap: 5ms}
devices:
  - id: chiller-1
    driver: modbus
    link: rs485-1
    poll_interval: 5s
    timeout: 1s
    connection: {transport: rtu, port: /dev/ttyUSB0, baudrate: 9600, unit: 3}
    points:
      - {id: chws_temp, unit: degC, modbus: {table: holding, address: 100, type: float32}}
      - {id: power_kw, scale: 0.1, modbus: {address: 30010}}
      - {id: running, kind: binary, modbus: {table: coil, address: 0}}
"""


def test_a_site_file_with_a_modbus_device_loads() -> None:
    from edge_agent.config.loader import load_config_text

    config = load_config_text(SITE)
    (dev,) = config.devices
    assert isinstance(dev, ModbusDevice) and dev.connection.unit == 3
    assert (dev.points[1].modbus.table, dev.points[1].modbus.address) == ("input", 9)


def test_site_file_errors_point_at_the_line() -> None:
    from edge_agent.config.errors import ConfigError
    from edge_agent.config.loader import load_config_text

    bad = SITE.replace("{table: coil, address: 0}", "{table: coil, address: 0, type: float32}")
    with pytest.raises(ConfigError) as info:
        load_config_text(bad, name="site.yaml")
    text = str(info.value)
    assert (
        "site.yaml:16 devices[0].points[2].modbus:" in text
        and "type float32 is not possible on a coil" in text
    )
