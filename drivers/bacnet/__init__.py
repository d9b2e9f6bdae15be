"""BACnet/IP driver.

`config` holds the pydantic models (imported when a config is validated, no bacpypes3);
`driver`, `stack`, `values` and `discovery` import bacpypes3 and are loaded only when a
BACnet device is started.
"""
