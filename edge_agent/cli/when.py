"""Points in time as the technician types them, for every time option of the CLI
(`logs --since`, `export --since/--until`, `trend --since/--until`): one grammar.

    now                       this moment
    today, yesterday,         local midnight starting that day (the gateway's clock and
    tomorrow                  time zone; across a daylight-saving change too)
    10m, 2h30m, 7d, 1.5h      that long ago (the durations of a configuration: ms, s, m,
                              h, d, largest unit first); `-10m` and `10m ago` say the same
    08:00, 08:00:30           that time today, local
    2026-11-24                local midnight starting that day
    2026-11-24 08:00          local time (also 2026-11-24T08:00, seconds and fractions
                              allowed); add Z or an offset (+08:00) for another zone
    @1764892800               seconds since 1970 (UTC), as journalctl writes them;
    @1764892800000            milliseconds (12 digits or more), as the platform counts

A bare number is refused: 90 could be seconds, an epoch time or a date (20261124).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

import click

from edge_agent.i18n import _

_EPOCH = re.compile(r"@([0-9]+(?:\.[0-9]+)?)")
_MS_DIGITS = 12  # @ and 12 digits or more: milliseconds (12 digits of seconds: year 33658)
_AGO = re.compile(r"(?:-\s*(?P<minus>.+)|(?P<ago>.+?)\s+ago)")
_LATEST_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


class WhenError(ValueError):
    """Not a point in time; the message says which forms are."""


def forms() -> str:
    return _(
        "expected now, today, yesterday, a duration ago (10m, 2h30m, 7d), a local time "
        "(08:00, 2026-11-24, 2026-11-24 08:00; add Z or +08:00 for another zone) or "
        "@EPOCH (seconds, or milliseconds)"
    )


def when_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A click option's value as wall-clock ms (None stays None); a time that is none is a
    usage error (exit 2). Every option of a command reads the same `now`."""
    if value is None:
        return None
    from edge_agent.points import wall_ms

    now = ctx.meta.setdefault("edge_agent.now_ms", wall_ms())
    try:
        return parse_when(value, now)
    except WhenError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def parse_when(text: str, now_ms: int) -> int:
    """`text` as wall-clock milliseconds, `now_ms` being now (injected: tests move it)."""
    stripped = text.strip()
    try:
        when = _parse(stripped, now_ms)
    except (OverflowError, OSError, ValueError) as exc:  # out of datetime's range
        if isinstance(exc, WhenError):
            raise
        raise WhenError(_("{text!r} is out of range").format(text=text)) from None
    if when is None:
        raise WhenError(_("{text!r}: {forms}").format(text=text, forms=forms()))
    if not 0 <= when <= _LATEST_MS:
        raise WhenError(_("{text!r} is out of range (before 1970 or after 9999)").format(text=text))
    return when


def _parse(text: str, now_ms: int) -> int | None:
    word = text.lower()
    if word == "now":
        return now_ms
    today = datetime.fromtimestamp(now_ms / 1000).date()  # local
    days = {"today": 0, "yesterday": -1, "tomorrow": 1}
    if word in days:
        return _local_ms(today + timedelta(days=days[word]), time())
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        raise WhenError(
            _("{text!r}: type the digits as ASCII digits 0-9 (half-width)").format(text=text)
        )
    if text.isdigit():
        raise WhenError(
            _(
                "{text!r}: a bare number is ambiguous: write 90s or 90m for a duration ago, "
                "@1764892800 for seconds since 1970, 2026-11-24 for a day"
            ).format(text=text)
        )
    epoch = _EPOCH.fullmatch(text)
    if epoch:
        number = epoch.group(1)
        whole = number.partition(".")[0]
        ms = float(number) if len(whole) >= _MS_DIGITS else float(number) * 1000
        return round(ms)
    ago = _duration(_relative(text))
    if ago is not None:
        return now_ms - round(ago * 1000)
    return _clock_time(text, today)


def _relative(text: str) -> str:
    """'-10m' and '10m ago' -> '10m' (journalctl's and plain English forms of 10m)."""
    match = _AGO.fullmatch(text)
    if match is None:
        return text
    return match.group("minus") or match.group("ago")


def _duration(text: str) -> float | None:
    """Seconds of a duration with its units (10m, 2h30m), or None if `text` is none."""
    from edge_agent.config.base import duration_seconds  # the configuration's durations

    if not text or text[0] not in "0123456789" or text.replace(".", "").isdigit():
        return None  # a bare number has no unit: refused above, never a duration here
    try:
        return duration_seconds(text)
    except ValueError:  # a duration, but its units out of order (30m1h): say why
        raise WhenError(
            _(
                "{text!r}: write the units from the largest to the smallest, each once "
                "(1h30m, not 30m1h)"
            ).format(text=text)
        ) from None


def _clock_time(text: str, today: date) -> int | None:
    try:
        when = datetime.fromisoformat(text.upper())
    except ValueError:
        try:
            moment = time.fromisoformat(text.upper())
        except ValueError:
            return None
        if moment.tzinfo is not None:  # 08:00Z: that time on today's date in that zone
            return round(datetime.combine(today, moment).timestamp() * 1000)
        return _local_ms(today, moment)
    if when.tzinfo is None:
        return _local_ms(when.date(), when.time())
    return round(when.timestamp() * 1000)


def _local_ms(day: date, moment: time) -> int:
    """Local `day` at `moment` in ms. A naive datetime's timestamp() asks the C library,
    which knows the zone's rules: midnight after a daylight-saving change has the new
    offset (a midnight that does not exist, as in some zones, counts as the hour after)."""
    return round(datetime.combine(day, moment).timestamp() * 1000)
