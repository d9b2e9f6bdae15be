"""edge-agent: field polling, store-and-forward to MQTT and safe local control for plant rooms."""

__version__ = "0.1.0"
# The installed site configuration. Its directory is the agent's own (config_apply rewrites
# the file there, atomically); certificates and secrets stay one level up, read-only to it.
SITE_CONFIG = "/etc/edge-agent/site/site.yaml"
