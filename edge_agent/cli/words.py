"""The words of the machine vocabulary that tables show to people: states, qualities,
severities. The agent's answers carry them in English (they are the MQTT contract's
values); the CLI shows `_(word)`. Marked here so that the catalogs have each one
(`./dev messages`; a test checks the lists against the code's own sets).
"""

from __future__ import annotations

from edge_agent.i18n import N_

SEVERITIES = (N_("critical"), N_("major"), N_("minor"), N_("warning"))
ALARM_STATES = (N_("active"), N_("acknowledged"), N_("cleared"))
# Why an alarm left the list (`alarms --history`).
ALARM_ENDINGS = (N_("superseded"), N_("rule removed"), N_("rule disabled"))
QUALITIES = (N_("good"), N_("bad"), N_("stale"), N_("overridden"))
LOOP_MODES = (
    N_("auto"), N_("disabled"), N_("overridden"), N_("safe"), N_("standby"), N_("waiting"),
)  # fmt: skip
UPLINK_STATES = (
    N_("starting"), N_("connecting"), N_("connected"), N_("disconnected"), N_("stopped"),
)  # fmt: skip
COMMAND_STATES = (N_("off"), N_("subscribing"), N_("subscribed"), N_("refused"))
SOURCES = (N_("safety"), N_("manual"), N_("platform"), N_("auto"))
# The quality of an interval's energy (edge_agent.energy.counters.EnergyQuality).
ENERGY_QUALITIES = (N_("measured"), N_("estimated"), N_("missing"))
