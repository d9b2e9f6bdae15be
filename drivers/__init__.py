"""Field drivers: protocol implementations of `drivers.base.Driver`."""
