"""Modbus TCP, RTU and RTU-over-TCP driver. Importing this package imports no pymodbus:
the config models are in `config`, the driver (pymodbus) in `driver`."""

from drivers.modbus.config import ModbusDevice, ModbusPoint

__all__ = ["ModbusDevice", "ModbusPoint"]
