"""`edge-agent export` and `edge-agent trend`: the telemetry kept in the local store.

Both read the store file directly (read-only, no lock; `edge_agent.store.history`), so they work
whether the agent runs or not. Every error is one line and exit code 1, never a traceback.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from edge_agent import SITE_CONFIG
from edge_agent.cli.common import fail
from edge_agent.points import Value, wall_ms
from edge_agent.store.history import HistoryError, HistoryReader, Reading

if TYPE_CHECKING:
    from rich.progress import Progress

DEFAULT_CONFIG = Path(SITE_CONFIG)
TERMINAL_POINTS = 2000  # more would only smear: the terminal plot gets a min/max envelope


def store_options(fn: Callable) -> Callable:
    fn = click.option(
        "--store",
        "store_path",
        type=click.Path(path_type=Path),
        default=None,
        help="The store file (default: store.path of the configuration).",
    )(fn)
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help=f"Site configuration, to find the store (default: {DEFAULT_CONFIG}).",
    )(fn)


def since_option(fn: Callable) -> Callable:
    fn = click.option(
        "--until",
        default="now",
        show_default=True,
        help="End (excluded): 'now', a duration ago or an ISO time.",
    )(fn)
    return click.option(
        "--since",
        default="1h",
        show_default=True,
        help="Start: a duration ago (30m, 2h, 7d) or an ISO time (2026-11-24T08:00 is local "
        "time; add Z or +01:00 for another zone).",
    )(fn)


def _store_path(config_path: Path | None, store_path: Path | None) -> Path:
    if store_path is not None:
        return store_path
    from edge_agent.config.errors import ConfigError
    from edge_agent.config.loader import load_config

    path = config_path or DEFAULT_CONFIG
    if config_path is None and not path.exists():
        fail(f"no configuration at {path}: give --config FILE or --store PATH")
    try:
        return load_config(path).store.path
    except ConfigError as exc:
        if len(exc.issues) == 1:
            fail(str(exc.issues[0]))
        fail(
            f"{path}: invalid configuration ({len(exc.issues)} problems); "
            f"run 'edge-agent config validate {path}'"
        )


def parse_when(text: str, now_ms: int, option: str) -> int:
    """'now', a duration ago ('90s', '2h', '7d') or an ISO time -> wall ms."""
    from edge_agent.config.base import parse_duration

    text = text.strip()
    if text == "now":
        return now_ms
    try:
        seconds = parse_duration(text)
    except ValueError:
        pass
    else:
        assert isinstance(seconds, float)
        return now_ms - int(seconds * 1000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(
            f"{option} {text!r}: expected 'now', a duration such as 30m, 2h, 7d, "
            "or an ISO time such as 2026-11-24T08:00"
        )
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as on the plant room's clock
    return int(when.timestamp() * 1000)


def _range(since: str, until: str) -> tuple[int, int]:
    now = wall_ms()
    start, end = parse_when(since, now, "--since"), parse_when(until, now, "--until")
    if start >= end:
        fail(f"--since ({_iso(start)}) must be before --until ({_iso(end)})")
    return start, end


def _iso(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _open(path: Path) -> HistoryReader:
    try:
        return HistoryReader(path)
    except HistoryError as exc:
        fail(str(exc))


def _nothing(reader: HistoryReader, start: int, end: int) -> str:
    oldest, newest = reader.span()
    if oldest is None or newest is None:  # both, or neither
        held = "it holds nothing"
    else:
        held = f"it holds {_iso(oldest)} to {_iso(newest)}"
    return f"no readings between {_iso(start)} and {_iso(end)} in {reader.path} ({held})"


# -- export --------------------------------------------------------------------------------


@click.command()
@since_option
@click.option(
    "--points", "points", default=None, help="DEVICE.POINT list, comma-separated (default: all)."
)
@click.option("--device", "devices", multiple=True, help="Every point of this device (repeatable).")
@click.option(
    "--format", "fmt", type=click.Choice(["csv"]), default="csv", show_default=True, help="Format."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write to this file (default: standard output).",
)
@store_options
def export(
    since: str,
    until: str,
    points: str | None,
    devices: tuple[str, ...],
    fmt: str,
    output: Path | None,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """Stored readings as CSV: ts (ISO, UTC), point, value, quality."""
    refs = [p.strip() for p in points.split(",") if p.strip()] if points else []
    start, end = _range(since, until)
    with _open(_store_path(config_path, store_path)) as reader:
        try:
            reader.check(refs, devices)
        except HistoryError as exc:
            fail(str(exc))
        readings = reader.readings(start, end, refs or None, devices=list(devices) or None)
        with closing(readings):  # ends the read transaction before the reader closes
            count = _write(readings, output, start, end)
        if reader.damaged:
            click.echo(f"warning: {reader.damaged} damaged rows skipped", err=True)
        if count == 0:
            click.echo(_nothing(reader, start, end), err=True)
        elif output is not None:
            click.echo(f"exported {count} readings to {output}", err=True)


def _write(readings: Iterator[Reading], output: Path | None, start: int, end: int) -> int:
    if output is None:
        try:
            return _write_csv(readings, sys.stdout, start, end)
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
    part = output.with_name(output.name + ".part")
    try:
        with part.open("w", newline="", encoding="utf-8") as file:
            count = _write_csv(readings, file, start, end)
        part.replace(output)
    except OSError as exc:
        part.unlink(missing_ok=True)
        fail(f"cannot write {output}: {exc.strerror or exc}")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return count


def _write_csv(readings: Iterator[Reading], file: TextIO, start: int, end: int) -> int:
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(["ts", "point", "value", "quality"])
    count = 0
    last_ts, last_iso = None, ""
    with _progress(end - start) as advance:
        try:
            for ref, ts, value, quality in readings:
                if ts != last_ts:
                    last_ts, last_iso = ts, _iso(ts)
                writer.writerow([last_iso, ref, _csv_value(value), quality])
                count += 1
                if count % 1000 == 0:
                    advance(ts - start)
        except HistoryError as exc:
            fail(str(exc))
    return count


def _csv_value(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class _progress:
    """A progress bar over the time range, on stderr, only when it is a terminal."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._bar: Progress | None = None

    def __enter__(self) -> Callable[[int], None]:
        if not sys.stderr.isatty():
            return lambda _done: None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = self._bar = Progress(
            TextColumn("exporting"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f} %"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        bar.start()
        task = bar.add_task("export", total=self._total)
        return lambda done: bar.update(task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- trend ---------------------------------------------------------------------------------


@click.command()
@click.argument("point")
@since_option
@click.option(
    "--png",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Draw into this PNG file instead of the terminal (needs edge-agent[charts]).",
)
@store_options
def trend(
    point: str,
    since: str,
    until: str,
    png: Path | None,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """Plot one point (DEVICE.POINT) over time, in the terminal or as a PNG."""
    if png is not None:
        try:
            import matplotlib
        except ImportError:
            fail("--png needs matplotlib: pip install edge-agent[charts]")
        matplotlib.use("Agg")
    start, end = _range(since, until)
    with _open(_store_path(config_path, store_path)) as reader:
        try:
            reader.check([point])
            series = [(ts, value) for _, ts, value, _ in reader.readings(start, end, [point])]
        except HistoryError as exc:
            fail(str(exc))
        if not series:
            fail(_nothing(reader, start, end))
    texts = [v for _, v in series if isinstance(v, str)]
    if texts:
        fail(f"{point} has text values ({texts[0]!r}...): it cannot be plotted; use export")
    xs = [ts / 1000 for ts, v in series if v is not None and _finite(v)]
    ys = [float(v) for _, v in series if v is not None and _finite(v)]
    missing = len(series) - len(ys)
    if not ys:
        fail(f"{point}: all {len(series)} readings in the range are bad (no value to plot)")
    summary = (
        f"{point}: {len(series)} readings from {_local(xs[0])} to {_local(xs[-1])} "
        f"(local time); min {min(ys):g}, max {max(ys):g}, last {ys[-1]:g}"
        + (f"; {missing} without a value" if missing else "")
    )
    if png is not None:
        _plot_png(point, xs, ys, png)
        click.echo(summary, err=True)
        click.echo(f"wrote {png}", err=True)
    else:
        _plot_terminal(point, xs, ys)
        click.echo(summary)


def _finite(value: Value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _local(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _envelope(xs: list[float], ys: list[float], buckets: int) -> tuple[list[float], list[float]]:
    """Min and max of each of `buckets` equal time slices: what a terminal can show."""
    if len(xs) <= 2 * buckets:
        return xs, ys
    start, width = xs[0], (xs[-1] - xs[0]) / buckets or 1.0
    slices: dict[int, list[tuple[float, float]]] = {}
    for x, y in zip(xs, ys, strict=True):
        slices.setdefault(min(int((x - start) / width), buckets - 1), []).append((x, y))
    out_x: list[float] = []
    out_y: list[float] = []
    for points in slices.values():
        low, high = min(points, key=lambda p: p[1]), max(points, key=lambda p: p[1])
        for x, y in sorted({low, high}):
            out_x.append(x)
            out_y.append(y)
    return out_x, out_y


def _plot_terminal(point: str, xs: list[float], ys: list[float]) -> None:
    try:
        import plotext as plt
    except ImportError:
        fail("the terminal plot needs plotext: pip install plotext")
    xs, ys = _envelope(xs, ys, TERMINAL_POINTS // 2)
    plt.clear_figure()
    plt.plot(xs, ys, marker="braille")
    ticks = [xs[0] + (xs[-1] - xs[0]) * i / 4 for i in range(5)] if xs[-1] > xs[0] else xs[:1]
    span = xs[-1] - xs[0]
    form = "%H:%M" if span < 86400 else "%m-%d %H:%M"
    plt.xticks(ticks, [datetime.fromtimestamp(t).strftime(form) for t in ticks])
    plt.title(point)
    chart = plt.build()
    if not sys.stdout.isatty():
        chart = plt.uncolorize(chart)  # no colour codes in a file or a pipe
    click.echo(chart)


def _plot_png(point: str, xs: list[float], ys: list[float], path: Path) -> None:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    stamps = [datetime.fromtimestamp(x).astimezone() for x in xs]
    figure, axes = plt.subplots(figsize=(11, 4), dpi=100)
    # matplotlib plots datetimes (its units registry converts them); its stubs' ArrayLike
    # does not say so.
    axes.plot(stamps, ys, linewidth=1)  # type: ignore[arg-type]
    axes.set_title(point)
    axes.set_xlabel("local time")
    axes.grid(True, alpha=0.3)
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=stamps[0].tzinfo))
    figure.autofmt_xdate()
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    finally:
        plt.close(figure)
