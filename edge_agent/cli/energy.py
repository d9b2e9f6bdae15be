"""`edge-agent energy`: the energy report of a day or a month, from the store's history.

Read-only, whether the agent runs or not (like `export`). On a terminal a table per
meter and category (80 columns); piped, tab-separated lines; `--json` the whole report
with every interval (docs/energy-accounting.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edge_agent.cli.common import fail
from edge_agent.i18n import _

if TYPE_CHECKING:
    from edge_agent.energy.counters import Period
    from edge_agent.energy.report import Report

DEFAULT_CONFIG = Path("/etc/edge-agent/site.yaml")
STEP: dict[str, Period] = {"day": "hour", "month": "day"}


@click.command(help=_("Energy by meter and sub-metering category: today, or this month."))
@click.option(
    "--period",
    type=click.Choice(["day", "month"]),
    default="day",
    show_default=True,
    help=_("The day (by hour) or the month (by day) that is under way."),
)
@click.option("--json", "as_json", is_flag=True, help=_("Machine-readable output."))
@click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path), default=None,
    help=_("Site configuration (its energy section and store)."),
)  # fmt: skip
@click.option(
    "--store", "store_path", type=click.Path(path_type=Path), default=None,
    help=_("The store file (default: store.path of the configuration)."),
)  # fmt: skip
@click.option(
    "--png", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help=_("Also draw the categories' energy of each interval as stacked bars into this PNG."),
)  # fmt: skip
def energy(
    period: str, as_json: bool, config_path: Path | None, store_path: Path | None,
    png: Path | None,
) -> None:  # fmt: skip
    from edge_agent.config.errors import ConfigError
    from edge_agent.config.loader import load_config
    from edge_agent.energy.counters import Sample
    from edge_agent.energy.report import build
    from edge_agent.points import wall_ms
    from edge_agent.store.history import HistoryError, HistoryReader

    path = config_path or DEFAULT_CONFIG
    try:
        config = load_config(path)
    except (ConfigError, OSError) as exc:
        fail(_("{path}: {problem}").format(path=path, problem=str(exc).splitlines()[0]))
    if config.energy is None:
        fail(_("{path} has no energy section (docs/energy-accounting.md)").format(path=path))
    model = config.energy
    tz = _tz_ms(model.timezone)
    step = STEP[period]
    now = wall_ms()
    start = _start_of(period, now, tz)
    refs = [meter.point for meter in model.meters]
    try:
        with HistoryReader(store_path or config.store.path) as history:
            samples: dict[str, list[Sample]] = {ref: [] for ref in refs}
            for ref, ts, value, quality in history.readings(start - 3_600_000, now, refs):
                samples[ref].append((ts, value, quality))
    except HistoryError as exc:
        fail(str(exc))
    # Up to the newest reading: the interval under way counts what has been read of it.
    newest = max((points[-1][0] for points in samples.values() if points), default=now)
    report = build(model, samples, step, start, max(newest, start + 1), tz)
    if png is not None:
        _plot(report, png, tz)
        click.echo(_("wrote {path}").format(path=png), err=True)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return
    from edge_agent.cli.status_view import echo_lines, piped, show, table, tsv_line

    rows = [
        (line.id, line.name or "", _amount(line.total), line.unit, _(line.quality.value))
        for line in [*report.meters, *report.categories]
    ]
    headings = (_("meter"), _("name"), _("energy"), _("unit"), _("quality"))
    if piped():
        echo_lines([tsv_line(headings), *(tsv_line(row) for row in rows)])
        return
    since = time.strftime("%Y-%m-%d %H:%M", time.gmtime((start + tz) / 1000))  # site time
    shown = table(_("energy since {start}").format(start=since))
    for heading in headings:
        shown.add_column(heading, justify="right" if heading == _("energy") else "left")
    for row in rows:
        shown.add_row(*row)
    show(shown)
    indicators = report.indicators
    if indicators.get("kwh_per_m2") is not None:
        click.echo(_("{value:.3f} kWh/m2").format(value=indicators["kwh_per_m2"]))
    if indicators.get("kwh_per_bed") is not None:
        click.echo(_("{value:.1f} kWh per bed").format(value=indicators["kwh_per_bed"]))
    for parent, balances in report.balances.items():
        if any(b.exceeded for b in balances):
            message = _("balance of {parent}: its children miss more than the allowed loss")
            click.echo(message.format(parent=parent))


def _amount(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _tz_ms(text: str) -> int:
    sign = -1 if text[0] == "-" else 1
    hours, minutes = text[1:].split(":")
    return sign * (int(hours) * 60 + int(minutes)) * 60_000


def _start_of(period: str, now_ms: int, tz_ms: int) -> int:
    """The local start of today or of this month (epoch ms)."""
    from datetime import UTC, datetime, timedelta

    local = datetime.fromtimestamp((now_ms + tz_ms) / 1000, UTC)
    first = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        first = first.replace(day=1)
    return int((first - timedelta(milliseconds=tz_ms)).timestamp() * 1000)


def _plot(report: Report, path: Path, tz: int) -> None:
    """Stacked bars: one per interval (hour or day), a colour per category."""
    try:
        import matplotlib
    except ImportError:
        fail(_("--png needs matplotlib: pip install edge-agent[charts]"))
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = report.categories or report.meters[:1]
    labels = [time.strftime("%m-%d %H:%M", time.gmtime((e + tz) / 1000)) for e in report.edges[:-1]]
    figure, axes = plt.subplots(figsize=(11, 4), dpi=100)
    bottom = [0.0] * len(labels)
    for line in lines:
        values = [i.energy or 0.0 for i in line.intervals]
        axes.bar(range(len(labels)), values, bottom=bottom, label=line.id)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    # The labels stay English (ids): matplotlib's default fonts have no Chinese glyphs.
    axes.set_title(f"energy by category ({report.period})")
    axes.set_ylabel(lines[0].unit if lines else "")
    step = max(1, len(labels) // 12)
    axes.set_xticks(range(0, len(labels), step), labels[::step], rotation=30, ha="right")
    axes.legend(loc="upper left", fontsize="small")
    axes.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        fail(_("cannot write {path}: {problem}").format(path=path, problem=exc.strerror or exc))
    finally:
        plt.close(figure)
