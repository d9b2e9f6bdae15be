"""`edge-agent export` and `edge-agent trend`: the telemetry kept in the local store.

Both read the store file directly (read-only, no lock; `edge_agent.store.history`), so they work
whether the agent runs or not. Every error is one line and exit code 1, never a traceback.
Times are read by `edge_agent.cli.when` (today, 2h30m, 2026-11-24 08:00, ...); units and
resolutions come from the site configuration, when there is one.
"""

from __future__ import annotations

import csv
import json
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
from edge_agent.cli.common import EXIT_USAGE, OneLineErrors, fail
from edge_agent.cli.status_view import NO_META, PointMeta, colour_off, with_unit
from edge_agent.cli.when import when_callback
from edge_agent.i18n import _
from edge_agent.points import Value
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
        "end",
        default="now",
        show_default=True,
        callback=when_callback,
        help="End (excluded), in the forms of --since.",
    )(fn)
    return click.option(
        "--since",
        "start",
        default="1h",
        show_default=True,
        callback=when_callback,
        help="Start: a duration ago (30m, 2h30m, 7d), today, yesterday, a local time "
        "(08:00, 2026-11-24, 2026-11-24 08:00; add Z or +08:00 for another zone) or "
        "@EPOCH (seconds or ms).",
    )(fn)


def store_source(
    config_path: Path | None, store_path: Path | None
) -> tuple[Path, dict[str, PointMeta]]:
    """The store file, and the units and resolutions of the site configuration's points
    (none without a configuration: a store given alone may come from another gateway)."""
    if store_path is not None and config_path is None:
        return store_path, {}
    from edge_agent.cli.status_view import point_meta
    from edge_agent.config.errors import ConfigError
    from edge_agent.config.loader import load_config

    path = config_path or DEFAULT_CONFIG
    if config_path is None and not path.exists():
        fail(_("no configuration at {path}: give --config FILE or --store PATH").format(path=path))
    try:
        config = load_config(path)
    except ConfigError as exc:
        if len(exc.issues) == 1:
            fail(str(exc.issues[0]))
        fail(
            _(
                "{path}: invalid configuration ({n} problems); run 'edge-agent config validate "
                "{path}'"
            ).format(path=path, n=len(exc.issues))
        )
    meta = point_meta(config.model_dump(mode="json"))
    return (store_path if store_path is not None else config.store.path), meta


def _check_range(start: int, end: int) -> None:
    if start >= end:
        fail(
            _("--since ({start}) must be before --until ({end})").format(
                start=_iso(start), end=_iso(end)
            ),
            EXIT_USAGE,
        )


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
        held = _("it holds nothing")
    else:
        held = _("it holds {oldest} to {newest}").format(oldest=_iso(oldest), newest=_iso(newest))
    return _("no readings between {start} and {end} in {path} ({held})").format(
        start=_iso(start), end=_iso(end), path=reader.path, held=held
    )


# -- export --------------------------------------------------------------------------------


@click.command(cls=OneLineErrors)
@since_option
@click.option(
    "--points", "points", default=None, help="DEVICE.POINT list, comma-separated (default: all)."
)
@click.option("--device", "devices", multiple=True, help="Every point of this device (repeatable).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="csv (a heading line; for spreadsheets) or jsonl (one JSON object per line; for scripts).",
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
    start: int,
    end: int,
    points: str | None,
    devices: tuple[str, ...],
    fmt: str,
    output: Path | None,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """Stored readings: ts (ISO, UTC), point, value, quality, unit; CSV or JSON lines."""
    refs = [p.strip() for p in points.split(",") if p.strip()] if points else []
    _check_range(start, end)
    path, meta = store_source(config_path, store_path)
    write = _csv_writer if fmt == "csv" else _jsonl_writer
    with _open(path) as reader:
        try:
            reader.check(refs, devices)
        except HistoryError as exc:
            fail(str(exc))
        readings = reader.readings(start, end, refs or None, devices=list(devices) or None)
        with closing(readings):  # ends the read transaction before the reader closes
            count = _write(readings, output, start, end, write(meta))
        if reader.damaged:
            click.echo(_("warning: {n} damaged rows skipped").format(n=reader.damaged), err=True)
        if count == 0:
            click.echo(_nothing(reader, start, end), err=True)
        elif output is not None:
            click.echo(_("exported {n} readings to {path}").format(n=count, path=output), err=True)


# A format: given the units, a function that writes the readings to a file (the count).
Writer = Callable[[Iterator[Reading], TextIO, Callable[[int], None]], int]


def _write(
    readings: Iterator[Reading], output: Path | None, start: int, end: int, write: Writer
) -> int:
    if output is None:
        try:
            with _progress(end - start) as advance:
                return write(readings, sys.stdout, lambda ts: advance(ts - start))
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
    part = output.with_name(output.name + ".part")
    try:
        with (
            part.open("w", newline="", encoding="utf-8") as file,
            _progress(end - start) as advance,
        ):
            count = write(readings, file, lambda ts: advance(ts - start))
        part.replace(output)
    except OSError as exc:
        part.unlink(missing_ok=True)
        fail(_("cannot write {path}: {problem}").format(path=output, problem=exc.strerror or exc))
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return count


CSV_COLUMNS = ["ts", "point", "value", "quality", "unit"]  # machine names: never translated


def _timed(
    readings: Iterator[Reading], advance: Callable[[int], None]
) -> Iterator[tuple[str, int, str, Value, str]]:
    """Each reading with its time in ISO (made once per timestamp); `advance` is told every
    1,000 readings; a damaged store ends the command with its message."""
    last_ts, last_iso = None, ""
    try:
        for count, (ref, ts, value, quality) in enumerate(readings, 1):
            if ts != last_ts:
                last_ts, last_iso = ts, _iso(ts)
            yield ref, ts, last_iso, value, quality
            if count % 1000 == 0:
                advance(ts)
    except HistoryError as exc:
        fail(str(exc))


def _csv_writer(meta: dict[str, PointMeta]) -> Writer:
    def write(readings: Iterator[Reading], file: TextIO, advance: Callable[[int], None]) -> int:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        count = 0
        for ref, _ts, iso, value, quality in _timed(readings, advance):
            writer.writerow([iso, ref, _csv_value(value), quality, meta.get(ref, NO_META).unit])
            count += 1
        return count

    return write


def _jsonl_writer(meta: dict[str, PointMeta]) -> Writer:
    """One object per reading: ts (ISO, UTC) and ts_ms, point, value (JSON's own types; a
    value that is no finite number is null), quality, unit."""

    def write(readings: Iterator[Reading], file: TextIO, advance: Callable[[int], None]) -> int:
        count = 0
        for ref, ts, iso, value, quality in _timed(readings, advance):
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            record = {"ts": iso, "ts_ms": ts, "point": ref, "value": value,
                      "quality": quality, "unit": meta.get(ref, NO_META).unit}  # fmt: skip
            file.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
        return count

    return write


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


@click.command(cls=OneLineErrors)
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
    start: int,
    end: int,
    png: Path | None,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """Plot one point (DEVICE.POINT) over time, in the terminal or as a PNG."""
    if png is not None:
        try:
            import matplotlib
        except ImportError:
            fail(_("--png needs matplotlib: pip install edge-agent[charts]"))
        matplotlib.use("Agg")
    _check_range(start, end)
    path, metas = store_source(config_path, store_path)
    meta = metas.get(point, NO_META)
    with _open(path) as reader:
        try:
            reader.check([point])
            series = [(ts, value) for _, ts, value, _ in reader.readings(start, end, [point])]
        except HistoryError as exc:
            fail(str(exc))
        if not series:
            fail(_nothing(reader, start, end))
    texts = [v for _, v in series if isinstance(v, str)]
    if texts:
        fail(
            _("{point} has text values ({value!r}...): it cannot be plotted; use export").format(
                point=point, value=texts[0]
            )
        )
    values = [v for _, v in series if v is not None and _finite(v)]
    xs = [ts / 1000 for ts, v in series if v is not None and _finite(v)]
    ys = [float(v) for v in values]  # binaries plot as 0/1
    missing = len(series) - len(ys)
    if not ys:
        fail(
            _("{point}: all {n} readings in the range are bad (no value to plot)").format(
                point=point, n=len(series)
            )
        )
    summary = _(
        "{point}: {n} readings from {first} to {last} (local time); "
        "min {low}, max {high}, last {latest}"
    ).format(
        point=point,
        n=len(series),
        first=_local(xs[0]),
        last=_local(xs[-1]),
        low=with_unit(min(values), meta),
        high=with_unit(max(values), meta),
        latest=with_unit(values[-1], meta),
    )
    if missing:
        summary += _("; {n} without a value").format(n=missing)
    if png is not None:
        _plot_png(point, xs, ys, png, meta)
        click.echo(summary, err=True)
        click.echo(_("wrote {path}").format(path=png), err=True)
    else:
        _plot_terminal(point, xs, ys, meta)
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


def time_ticks(xs: list[float], count: int = 5) -> tuple[list[float], list[str]]:
    """About `count` ticks over the span of `xs` (seconds), labelled as precisely as the
    span needs (seconds under 10 minutes, the date past a day), no label twice."""
    span = xs[-1] - xs[0]
    ticks = [xs[0] + span * i / (count - 1) for i in range(count)] if span > 0 else xs[:1]
    if span < 600:
        form = "%H:%M:%S"
    elif span < 86400:
        form = "%H:%M"
    else:
        form = "%m-%d %H:%M"
    kept: list[float] = []
    labels: list[str] = []
    for tick in ticks:
        label = datetime.fromtimestamp(tick).strftime(form)
        if label not in labels:
            kept.append(tick)
            labels.append(label)
    return kept, labels


def _plot_terminal(point: str, xs: list[float], ys: list[float], meta: PointMeta) -> None:
    try:
        import plotext as plt
    except ImportError:
        fail(_("the terminal plot needs plotext: pip install plotext"))
    xs, ys = _envelope(xs, ys, TERMINAL_POINTS // 2)
    plt.clear_figure()
    # No background, frame and labels in the terminal's own colour: visible on a dark
    # terminal as on a light one (plotext's default theme paints a white canvas).
    plt.theme("clear")
    plt.plot(xs, ys, marker="braille", color="green")
    ticks, labels = time_ticks(xs)
    plt.xticks(ticks, labels)
    plt.title(f"{point} ({meta.unit})" if meta.unit else point)
    chart = plt.build()
    if not sys.stdout.isatty() or colour_off():
        chart = plt.uncolorize(chart)  # no colour codes in a file, a pipe, or with NO_COLOR
    click.echo(chart)


def _plot_png(point: str, xs: list[float], ys: list[float], path: Path, meta: PointMeta) -> None:
    import matplotlib.pyplot as plt

    stamps = [datetime.fromtimestamp(x).astimezone() for x in xs]
    figure, axes = plt.subplots(figsize=(11, 4), dpi=100)
    # matplotlib plots datetimes (its units registry converts them); its stubs' ArrayLike
    # does not say so.
    axes.plot(stamps, ys, linewidth=1)  # type: ignore[arg-type]
    axes.set_title(point)
    # The axis labels stay English: matplotlib's default fonts have no Chinese glyphs.
    axes.set_xlabel("local time")
    if meta.unit:
        axes.set_ylabel(meta.unit)
    axes.grid(True, alpha=0.3)
    # The terminal chart's ticks: as precise as the span needs, each label once (a fixed
    # "%m-%d %H:%M" repeated the same minute over a short range; matplotlib's concise
    # labels repeat "10" for every minute's tenth second).
    ticks, labels = time_ticks(xs, 7)
    zone = stamps[0].tzinfo
    axes.set_xticks([datetime.fromtimestamp(t, zone) for t in ticks], labels)  # type: ignore[arg-type]
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        fail(_("cannot write {path}: {problem}").format(path=path, problem=exc.strerror or exc))
    finally:
        plt.close(figure)
