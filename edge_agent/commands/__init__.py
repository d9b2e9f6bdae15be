"""One command path for everyone: the platform over MQTT, the technician over the local
socket and the agent's own control loops (docs/mqtt-api.md, "Commands")."""
