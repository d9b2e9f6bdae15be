"""What the CLI shows people: the status screen, and what every table of the CLI shares.

- **Width.** Tables fit the terminal (80 columns is the plant room's console): values and
  units are never the column that shrinks; names and texts wrap (`fold`) instead of being
  cut. Lines of facts (`Phrases`) break between phrases, never inside one.
- **Colour** only on a terminal, and never with `NO_COLOR` (no escape code at all, bold
  neither). Lines carry no trailing spaces (`Fitted`).
- **Piped**, the commands that list things print one tab-separated row per thing
  (`tsv_line`), or JSON with `--json`.
- **Values** at the point's resolution, with its unit (`PointMeta`, `format_value`).
- Texts from devices, brokers or rules are escaped: "[mg/L]" or "[/]" in a message is text,
  not markup. Texts for people go through `_()`, headings too; rich measures the width of
  Chinese characters, so columns stay aligned in any language.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markup import escape
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from edge_agent.i18n import _

SIGNIFICANT = 4  # digits shown of a float whose point declares no resolution
_MAX_DECIMALS = 9


# -- consoles and layout ---------------------------------------------------------------------


def colour_off() -> bool:
    """NO_COLOR (https://no-color.org): set and not empty."""
    return os.environ.get("NO_COLOR", "") != ""


def console(*, stderr: bool = False) -> Console:
    """A console for people: colour on a terminal only, none with NO_COLOR."""
    return Console(stderr=stderr, highlight=False, color_system=None if colour_off() else "auto")


def show(renderable: RenderableType, on: Console | None = None) -> None:
    (on or console()).print(Fitted(renderable))


def piped() -> bool:
    """Standard output goes to a pipe or a file, not to a person's terminal."""
    return not console().is_terminal


class Fitted:
    """`renderable` as a person reads it: no trailing spaces; with NO_COLOR, no styles
    (rich's own NO_COLOR drops colours but keeps bold and underline)."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, on: Console, options: ConsoleOptions) -> RenderResult:
        plain = colour_off()
        for line in on.render_lines(self.renderable, options, pad=False):
            segments = list(Segment.strip_styles(line)) if plain else line
            yield from _rstrip(segments)
            yield Segment.line()

    def __rich_measure__(self, on: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(on, options, self.renderable)


def _rstrip(segments: list[Segment]) -> list[Segment]:
    while segments and not segments[-1].control and not segments[-1].text.rstrip(" "):
        segments.pop()
    if segments and not segments[-1].control:
        last = segments[-1]
        segments[-1] = Segment(last.text.rstrip(" "), last.style)
    return segments


class Phrases:
    """Short facts on a line ("published 0", "in flight 2"), two spaces (or `sep`) apart.
    A line breaks between phrases, never inside one (only a phrase wider than the line
    wraps); a comma separator stays at the end of the broken line."""

    def __init__(self, *phrases: str | Text, sep: str = "  ") -> None:
        self.phrases = [Text.from_markup(p) if isinstance(p, str) else p for p in phrases if p]
        self.sep = sep

    def __rich_measure__(self, on: Console, options: ConsoleOptions) -> Measurement:
        widths = [p.cell_len for p in self.phrases] or [0]
        whole = sum(widths) + cell_len(self.sep) * (len(widths) - 1)
        return Measurement(min(max(widths), options.max_width), whole).with_maximum(
            options.max_width
        )

    def __rich_console__(self, on: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        tail = self.sep.rstrip()
        lines: list[Text] = []
        line = Text()
        for phrase in self.phrases:
            if line and line.cell_len + cell_len(self.sep) + phrase.cell_len > width:
                line.append(tail)
                lines.append(line)
                line = Text()
            elif line:
                line.append(self.sep)
            line.append_text(phrase)
        lines.append(line)
        yield Text("\n").join(lines)


def table(title: str | None = None) -> Table:
    """The CLI's table: a rule under the headings, columns two spaces apart, no frame
    (a frame costs a tenth of an 80-column line)."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        header_style="bold",
    )


GAP = 2  # between the columns of `table()`


LineCount = Callable[[str, int], int]


def fit_widths(
    columns: list[list[str]],
    wraps: Mapping[int, LineCount],
    floors: Mapping[int, int],
    available: int,
) -> list[int]:
    """Widths for the columns of a table (each a list of its cells' texts, its heading
    first) so that it fits `available` cells. Only the columns in `wraps` give up width,
    each down to its floor; `wraps[i](text, width)` says how many lines a cell takes at a
    width. The width is taken where it costs the fewest extra lines (ties: the column
    listed first in `wraps`); the other columns (values, units) keep their natural width."""
    widths = [max((text_width(cell) for cell in cells), default=0) for cells in columns]
    excess = sum(widths) + GAP * (len(widths) - 1) - available
    rows = max((len(cells) for cells in columns), default=0)
    cache: dict[tuple[int, int], list[int]] = {}

    def lines(index: int, width: int) -> list[int]:
        key = (index, width)
        if key not in cache:
            cells = columns[index]
            cache[key] = [wraps[index](cell, width) if cell else 1 for cell in cells]
        return cache[key]

    def total(changed: int, width: int) -> int:
        per_column = [lines(i, width if i == changed else widths[i]) for i in wraps]
        return sum(max(column[row] for column in per_column if row < len(column))
                   for row in range(rows))  # fmt: skip

    rank = {index: n for n, index in enumerate(wraps)}
    while excess > 0:
        now = total(-1, 0)
        best: tuple[float, int, int, int] | None = None  # cost per cell, rank, give, index
        for index in wraps:
            for width in range(widths[index] - 1, min(widths[index], floors[index]) - 1, -1):
                give = widths[index] - width
                cost = (total(index, width) - now) / min(give, excess)
                choice = (cost, min(give, excess) * -1, rank[index], index)
                if best is None or choice < best:
                    best = choice
        if best is None:
            break  # every column at its floor: rich shrinks the rest as it can
        index = best[3]
        give = -best[1]
        widths[index] -= give
        excess -= give
    return widths


def wrapped_lines(text: str, width: int) -> int:
    """Lines `text` takes, wrapped between words at `width` (a longer word folds)."""
    if width <= 0:
        return 1
    count = 0
    for paragraph in text.split("\n"):
        used = 0
        count += 1
        for word in paragraph.split():
            size = cell_len(word)
            if used and used + 1 + size <= width:
                used += 1 + size
                continue
            if used:
                count += 1
            count += (size - 1) // width
            used = size % width or width
    return count


def ref_lines(ref: str, width: int) -> int:
    """Lines DEVICE.POINT takes at `width`, broken after the device (`split_ref`)."""
    if width <= 0:
        return 1
    return sum(max(1, -(-cell_len(part) // width)) for part in split_ref(ref, width).split("\n"))


def text_width(text: str) -> int:
    """Cells of the widest line of `text` (a Chinese character takes two)."""
    return max((cell_len(line) for line in text.split("\n")), default=0)


def word_width(text: str) -> int:
    """Cells of the longest word of `text`: narrower, a wrapped column would cut words."""
    return max((cell_len(word) for word in text.split()), default=0)


def word_floor(cells: Iterable[str], least: int, most: int) -> int:
    """A wrapped column's floor: its longest word (a word is cut only beyond `most`)."""
    return max(least, min(most, max((word_width(c) for c in cells), default=0)))


def split_ref(ref: str, width: int) -> str:
    """DEVICE.POINT broken after the device when it does not fit `width` (rich folds
    what still does not)."""
    if cell_len(ref) <= width or "." not in ref:
        return ref
    device, _dot, point = ref.partition(".")
    return f"{device}.\n{point}"


class Sized:
    """A renderable made for the width it is drawn in (`build(width)`): a table decides
    which columns wrap before rich would shrink the wrong one."""

    def __init__(self, build: Callable[[int], RenderableType]) -> None:
        self.build = build

    def __rich_console__(self, on: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(options.max_width)

    def __rich_measure__(self, on: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(on, options, self.build(options.max_width))


def echo_lines(lines: Iterable[str]) -> None:
    """Lines to standard output; a reader that has seen enough (`| head`) ends it quietly."""
    import sys

    import click

    try:
        for line in lines:
            click.echo(line)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


def tsv_line(cells: Iterable[object]) -> str:
    """One row for a pipe: tab-separated, a cell's own tabs and line breaks made spaces."""
    return "\t".join(" ".join(str(c).split()) if c is not None else "" for c in cells)


# -- values ----------------------------------------------------------------------------------


class PointMeta(NamedTuple):
    """What a value needs to be shown: its unit and, if the point declares its resolution,
    the decimals that go with it."""

    unit: str = ""
    decimals: int | None = None


NO_META = PointMeta()


def point_meta(config: Mapping[str, Any]) -> dict[str, PointMeta]:
    """DEVICE.POINT -> unit and decimals, from a configuration as JSON (`model_dump(mode=
    "json")`, or the agent's `config` answer). The resolution a point declares:

    - a fake point's `signal.resolution` (0.1: one decimal, 0.25: two, 5: none);
    - a scaled integer register, as the Modbus driver rounds it: the decimals of `scale`
      and `offset` (scale 0.1: one decimal), on any point with a scale but a float register.

    Points that declare none show floats to 4 significant digits (`SIGNIFICANT`), but the
    whole part whole and at least one decimal (1.0188841356578546: 1.019, 1652.37: 1652.4,
    7.0: 7.0, 0.018884: 0.01888); integers and texts as they are."""
    found: dict[str, PointMeta] = {}
    for device in config.get("devices") or ():
        for point in device.get("points") or ():
            ref = f"{device.get('id')}.{point.get('id')}"
            found[ref] = PointMeta(str(point.get("unit") or ""), _declared_decimals(point))
    return found


def _declared_decimals(point: Mapping[str, Any]) -> int | None:
    resolution = (point.get("signal") or {}).get("resolution")
    if isinstance(resolution, int | float) and resolution > 0:
        return _decimals(resolution)
    scale, offset = point.get("scale", 1.0), point.get("offset", 0.0)
    register = (point.get("modbus") or {}).get("type", "")
    scaled = scale not in (None, 1, 1.0) or offset not in (None, 0, 0.0)
    if scaled and not str(register).startswith("float"):
        return max(_decimals(scale or 1.0), _decimals(offset or 0.0))
    return None


def _decimals(x: float) -> int:
    """Decimal places of a number as written in a config: 0.1 -> 1, 0.025 -> 3, 5 -> 0."""
    exponent = Decimal(repr(float(x))).normalize().as_tuple().exponent
    return min(_MAX_DECIMALS, -exponent) if isinstance(exponent, int) and exponent < 0 else 0


def agent_meta(socket: Path) -> dict[str, PointMeta]:
    """Units and resolutions of the running agent's points, from its configuration
    (the `config` request); empty if it cannot tell (values then show without units)."""
    from edge_agent.local_api import request

    try:
        answer = request(socket, "config")
    except (OSError, ValueError):
        return {}
    config = answer.get("config") if isinstance(answer, dict) and answer.get("ok") else None
    return point_meta(config) if isinstance(config, dict) else {}


def format_value(value: object, meta: PointMeta = NO_META) -> str:
    """A value as a person reads it (without its unit): floats at the point's resolution."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if meta.decimals is not None:
            return f"{value:.{meta.decimals}f}"
        return significant(value)
    if isinstance(value, str):
        return value if value else '""'
    return repr(value)


def significant(value: float, digits: int = SIGNIFICANT) -> str:
    """`digits` significant digits, never fewer than the whole part, at least one decimal
    (a float looks like one), without trailing zeros: 1.0188841356578546 -> 1.019,
    7.0 -> 7.0, 0.93 -> 0.93, 1652.37 -> 1652.4, 0.000123456 -> 0.0001235."""
    if value == 0:
        return "0.0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -6:
        return f"{value:.{digits - 1}e}"
    text = f"{value:.{max(1, digits - 1 - magnitude)}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def with_unit(value: object, meta: PointMeta = NO_META) -> str:
    """ "7.5 degC", "true", "-" (no unit after a missing value)."""
    shown = format_value(value, meta)
    return f"{shown} {meta.unit}" if meta.unit and value is not None else shown


# -- the status screen -----------------------------------------------------------------------


def age(ts_ms: int | None) -> str:
    if not ts_ms:
        return "-"
    seconds = max(0.0, time.time() - ts_ms / 1000)
    if seconds < 120:
        return _("{n} s ago").format(n=f"{seconds:.0f}")
    if seconds < 7200:
        return _("{n} min ago").format(n=f"{seconds / 60:.0f}")
    return _("{n} h ago").format(n=f"{seconds / 3600:.1f}")


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _uptime(seconds: float) -> str:
    if seconds < 120:
        return _("{n} s").format(n=f"{seconds:.0f}")
    if seconds < 7200:
        return _("{n} min").format(n=f"{seconds / 60:.0f}")
    if seconds < 172800:
        return _("{n} h").format(n=f"{seconds / 3600:.1f}")
    return _("{n} d").format(n=f"{seconds / 86400:.1f}")


def _commands_state(state: str | None) -> str:
    """Whether platform commands can reach the agent (the broker granted the subscription)."""
    if state in (None, "off"):
        return ""
    colour = "green" if state == "subscribed" else "red"
    return _("commands {state}").format(state=f"[{colour}]{escape(_(str(state)))}[/]")


SEVERITY_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow"}


def render_status(status: dict[str, Any]) -> Group:
    up = status["uplink"]
    store = status["store"]
    head = Table.grid(padding=(0, 2))
    head.add_column(no_wrap=True)
    head.add_column()

    def row(label: str, *phrases: str) -> None:
        head.add_row(f"[bold]{label}[/]" if label else "", Phrases(*phrases))

    def note(text: str, style: str = "red") -> None:
        """A sentence under a row (an error): it wraps between its words."""
        head.add_row("", f"[{style}]{escape(text)}[/]")

    row(_("site / gateway"), f"{escape(status['site'])} / {escape(status['gateway'])}")
    row(
        _("agent"),
        f"v{status['version']}",
        _("pid {pid}").format(pid=status["pid"]),
        _("up {time}").format(time=_uptime(status["uptime_s"])),
        _("config {hash}").format(hash=status["config_hash"]),
    )
    state_style = "green" if up["state"] == "connected" else "red"
    row(
        _("uplink"),
        f"[{state_style}]{escape(_(up['state']))}[/] {escape(up['endpoint'] or '')}".rstrip(),
        _("published {n}").format(n=up["published"]),
        _("in flight {n}").format(n=up["in_flight"]),
        _("connects {n}").format(n=up["connects"]),
        _commands_state(up.get("commands")),
    )
    commands_refused = up.get("commands") == "refused"
    if up.get("last_error") and (up["state"] != "connected" or commands_refused):
        note(str(up["last_error"]))
    head.add_row(
        f"[bold]{_('backlog')}[/]",
        Phrases(
            _("{n} messages").format(n=store["backlog_rows"]),
            _("{n} points").format(n=store["backlog_points"]),
            _("oldest {age}").format(age=age(store["oldest_ts"])),
            sep=_(", "),
        ),
    )
    row(
        _("store"),
        _("{used} of {budget}").format(
            used=_bytes(store["used_bytes"]), budget=_bytes(store["budget_bytes"])
        ),
        _("evicted {n} points").format(n=store["evicted_points"]),
    )
    if store.get("error"):
        note(_("store error: {error}").format(error=store["error"]))
    if store.get("too_small"):
        note(str(store["too_small"]))
    if store.get("dropped_points"):
        note(
            _("{n} points never stored (the disk was full; announced as data_dropped)").format(
                n=store["dropped_points"]
            )
        )
    if up.get("ack_error"):
        note(
            _("acknowledgements not recorded ({n} waiting): {error}").format(
                n=up.get("unrecorded_acks", 0), error=up["ack_error"]
            )
        )
    for platform in status.get("hj212") or ():
        connected = platform["connected"]
        state = _("connected") if connected else _("disconnected")
        row(
            _("HJ 212"),
            f"{escape(platform['platform'])} [{'green' if connected else 'red'}]{state}[/]",
            _("owed {count}").format(count=platform["owed"]),
            _("last answer {age}").format(age=age(platform["last_ack_ms"])),
        )
    alarms = status.get("alarms")
    if alarms is not None:
        worst = next((s for s in ("critical", "major", "minor", "warning") if alarms.get(s)), None)
        style = SEVERITY_STYLE.get(worst or "", "")
        text = _("{active} active, {unacknowledged} unacknowledged").format(
            active=alarms["active"], unacknowledged=alarms["unacknowledged"]
        )
        row(_("alarms"), f"[{style}]{text}[/]" if style else text)
        for alarm in alarms.get("list", []):
            if alarm["state"] == "cleared":
                continue
            severity = alarm["severity"]
            colour = SEVERITY_STYLE.get(severity, "")
            shown = escape(_(severity))
            head.add_row(
                "",
                f"[{colour}]{shown}[/] {escape(alarm['message'])}"
                if colour
                else f"{shown} {escape(alarm['message'])}",
            )
    commands = status.get("commands")
    if commands is not None:
        head.add_row(
            f"[bold]{_('commands')}[/]",
            Phrases(
                _("{n} done").format(n=commands["done"]),
                _("{n} rejected").format(n=commands["rejected"]),
                _("{n} failed").format(n=commands["failed"]),
                sep=_(", "),
            ),
        )
        for hold in commands["holds"]:
            if hold["source"] in ("manual", "platform"):
                held = _("{point} held by {source} = {value}").format(
                    point=hold["point"], source=_(hold["source"]), value=format_value(hold["value"])
                )
                if hold.get("ending"):
                    held += _(", ending: {why}").format(why=hold["ending"])
                head.add_row("", f"[cyan]{escape(held)}[/]")
    for loop in status.get("loops") or ():
        mode = loop.get("mode", "?")
        style = {"auto": "green", "safe": "red", "overridden": "cyan"}.get(mode, "dim")
        row(
            _("loop") if loop is status["loops"][0] else "",
            f"{escape(loop['id'])} [{style}]{escape(_(mode))}[/]",
        )

    devices = status["devices"]
    device_table = Sized(lambda width: _devices_table(devices, width))
    problems = [
        _problem(name, d)
        for name, d in sorted(status["devices"].items())
        if not d["up"] or d["bad_points"]
    ]
    return Group(Fitted(Group(head, device_table, *problems)))


def _devices_table(devices: dict[str, dict[str, Any]], width: int | None = None) -> Table:
    """The device name is what the technician looks for: it folds, it is never cut. Errors
    are listed under the table, where a long reason has the whole width. On a narrow
    terminal the columns a technician needs least go first (rtt, errors, driver)."""
    headings = [_("device"), _("driver"), _("state"), _("points"), _("bad"), _("last read"),
                _("rtt"), _("errors")]  # fmt: skip
    rows = [
        [
            name,
            d["driver"],
            _("up") if d["up"] else _("down"),
            str(d["points"]),
            str(d["bad_points"]),
            age(d["last_good_ts"]),
            f"{d['rtt_ms']:.1f} ms",
            f"{100 * d['error_rate']:.1f} %",
        ]
        for name, d in sorted(devices.items())
    ]
    keep = list(range(len(headings)))
    if width is not None:
        natural = [max(text_width(r[i]) for r in [headings, *rows]) for i in keep]
        for dropped in (6, 7, 1):
            least = min(natural[0], 8) + sum(natural[i] for i in keep[1:]) + GAP * (len(keep) - 1)
            if least <= width:
                break
            keep.remove(dropped)
    columns = [[r[i] for r in [headings, *rows]] for i in keep]
    widths = (
        [max(text_width(cell) for cell in cells) for cells in columns]
        if width is None
        else fit_widths(columns, {0: ref_lines}, {0: 8}, width)
    )
    shown = table(_("devices"))
    shown.add_column(headings[0], overflow="fold", max_width=widths[0])
    for i in keep[1:]:
        shown.add_column(
            headings[i], no_wrap=True, justify="right" if i in (3, 4, 6, 7) else "left"
        )
    for row, d in zip(rows, (d for _name, d in sorted(devices.items())), strict=True):
        cells = [escape(row[i]) for i in keep]
        if 2 in keep:
            state = keep.index(2)
            cells[state] = f"[{'green' if d['up'] else 'red'}]{cells[state]}[/]"
        shown.add_row(*cells)
    return shown


def _problem(name: str, device: dict[str, Any]) -> str:
    if not device["up"]:
        what = _("down")
        reason = device["last_error"]
    else:
        what, reason = _("{n} bad points").format(n=device["bad_points"]), None
    line = f"[red]{escape(name)}[/]: {escape(what)}"
    return line + (f" — {escape(str(reason))}" if reason else "")
