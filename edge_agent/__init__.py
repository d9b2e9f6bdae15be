"""edge-agent: field polling, store-and-forward to MQTT and safe local control for plant rooms."""

__version__ = "0.1.0"
