"""`edge-agent demo`: a local broker, the plant, the agent and a live status screen."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from edge_agent.broker_tools import BrokerUnavailable, LocalBroker, PlatformSubscriber, free_port
from edge_agent.cli.status_view import Fitted, render_status
from edge_agent.i18n import _
from edge_agent.local_api import request

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG = CONFIGS / "hospital-site.yaml"
DEFAULT_SIM = CONFIGS / "sim" / "hospital.yaml"
SIM_READY_TIMEOUT_S = 30.0


def _demo_config(source: Path, workdir: Path, port: int, bureau_port: int | None) -> Path:
    """The demo config pointed at the local broker (and its HJ 212 platforms at the
    simulated bureau), with its store and socket in `workdir`. Includes are resolved first
    (the copy lives elsewhere)."""
    from edge_agent.config.loader import load_config

    raw = load_config(source).model_dump(mode="json", exclude_defaults=True)
    raw["uplink"]["endpoints"] = [{"host": "127.0.0.1", "port": port}]
    raw.setdefault("store", {})["path"] = str(workdir / "outbox.db")
    raw.setdefault("local", {})["socket"] = str(workdir / "agent.sock")
    if "hj212" in raw:
        raw["hj212"]["store"] = str(workdir / "hj212.db")
        for platform in raw["hj212"]["platforms"]:
            platform.update(host="127.0.0.1", port=bureau_port)
    target = workdir / "site.yaml"
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    return target


def _loggers(source: Path) -> list[str]:
    """MN=PW of each HJ 212 platform of the config: the loggers the bureau knows."""
    from edge_agent.config.loader import load_config

    hj212 = load_config(source).hj212
    if hj212 is None:
        return []
    return sorted({f"{p.mn}={p.password}" for p in hj212.platforms})


def _start_bureau(loggers: list[str], port: int, workdir: Path) -> subprocess.Popen:
    """The simulated environmental platform: one line per record it gets, in bureau.log."""
    command = [sys.executable, "-m", "simulators.hj212_platform", "--port", str(port)]
    for logger in loggers:
        command += ["--logger", logger]
    with open(workdir / "bureau.log", "wb") as out, open(workdir / "bureau.err", "wb") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)


def _bureau_view(workdir: Path, lines: int = 3) -> Text | None:
    """The last records the bureau received, one line each, cut to the screen."""
    path = workdir / "bureau.log"
    if not path.exists():
        return None
    received = path.read_text(errors="replace").splitlines()
    title = _("what the environmental bureau receives (HJ 212, {count} records)")
    text = Text(title.format(count=len(received)), style="italic")
    for line in received[-lines:] or [_("nothing yet (minute data close each minute)")]:
        text.append("\n" + line, style="")
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


def _platform_view(subscriber: PlatformSubscriber) -> Table:
    table = Table(
        title=_("what the platform receives (latest message per device)"), title_justify="left"
    )
    for column in (_("device"), _("seq"), _("values")):
        table.add_column(column)
    for device, body in sorted(subscriber.latest.items()):
        values = ", ".join(f"{k}={v}" for k, v in list(body["values"].items())[:5])
        table.add_row(escape(device), str(body["seq"]), escape(values))
    caption = _("{messages} messages, {points} point values received")
    table.caption = caption.format(messages=subscriber.count, points=subscriber.points)
    return table


def _plant_headline(subscriber: PlatformSubscriber) -> str:
    """The energy manager's line: what the chilled-water plant draws for what it delivers."""
    plant = subscriber.latest.get("plant", {}).get("values", {})
    if not {"power_kw", "cooling_rt", "kw_per_ton"} <= plant.keys():
        return ""
    # The texts have no markup of their own: the bold parts are put in afterwards.
    figures = escape(_("{power} kW for {cooling} RT = {efficiency}  (supply {supply} degC)"))
    return f"[bold]{escape(_('chilled-water plant'))}[/]  " + figures.format(
        power=f"{plant['power_kw']:,.0f}",
        cooling=f"{plant['cooling_rt']:,.0f}",
        efficiency=f"[bold]{plant['kw_per_ton']:.3f} kW/RT[/]",
        supply=f"{plant.get('chws_temp', float('nan')):.2f}",
    )


def _screen(socket: Path, subscriber: PlatformSubscriber, workdir: Path) -> Fitted:
    parts: list = [_plant_headline(subscriber)]
    try:
        status = request(socket, "status")
        status.pop("ok", None)
        parts.append(render_status(status))
    except OSError:
        parts.append(Text(_("agent starting..."), style="yellow"))
    bureau = _bureau_view(workdir)
    if bureau is not None:
        parts.append(bureau)
    return Fitted(Group(*parts, _platform_view(subscriber)))  # no trailing spaces


def _start_simulator(sim: Path, speed: float, workdir: Path) -> subprocess.Popen:
    log = workdir / "simulator.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "simulators", "--config", str(sim), "--speed", str(speed)],
            stdout=out,
            stderr=out,
            start_new_session=True,  # terminal signals go to the demo, which stops it
        )
    deadline = time.monotonic() + SIM_READY_TIMEOUT_S
    while b"simulator ready" not in log.read_bytes():
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            process.kill()
            # The simulator says what failed in its last line (a port taken: exit 3).
            lines = log.read_text(errors="replace").strip().splitlines()
            last = lines[-1].removeprefix("error: ") if lines else _("no output")
            if code is not None:
                text = _("the simulator exited with {code}: {problem}").format(
                    code=code, problem=last
                )
            else:
                text = _("the simulator did not start in time: {problem}").format(problem=last)
            raise RuntimeError(text)
        time.sleep(0.1)
    return process


def _say(console: Console, text: str, style: str = "") -> None:
    """A line of the demo's own: not markup, wrapped without trailing spaces."""
    console.print(Fitted(Text(text, style=style)))


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(
    config_path: Path | None,
    duration: float | None,
    sim: Path | None = DEFAULT_SIM,
    speed: float = 1.0,
) -> int:
    console = Console()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal or a kill: clean up too
        signal.signal(sig, _interrupt)
    source = config_path or DEFAULT_CONFIG
    workdir = Path(tempfile.mkdtemp(prefix="edge-agent-demo-"))
    simulator = None
    try:
        if sim is not None:
            text = _("starting the simulated plant room ({sim}, {speed}x real time)")
            _say(console, text.format(sim=sim, speed=speed))
            simulator = _start_simulator(sim, speed, workdir)
        broker = LocalBroker(workdir / "broker").start()
    except (BrokerUnavailable, RuntimeError) as exc:
        _say(console, _("error: {message}").format(message=exc), style="red")
        if simulator is not None:
            simulator.terminate()
        shutil.rmtree(workdir, ignore_errors=True)
        return 1
    loggers = _loggers(source)
    bureau_port = free_port() if loggers else None
    bureau = _start_bureau(loggers, bureau_port, workdir) if bureau_port else None
    site = _demo_config(source, workdir, broker.port, bureau_port)
    text = _("broker on {address}; agent config {site}; logs in {log}")
    where = {"address": f"127.0.0.1:{broker.port}", "site": site, "log": workdir / "agent.log"}
    _say(console, text.format(**where))
    subscriber = PlatformSubscriber(broker.port, keep=False, client_id="demo-platform").start()
    with open(workdir / "agent.log", "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(site), "--log-json"],
            stdout=log,
            stderr=log,
            # Not in the terminal's process group: a closed terminal's SIGHUP would make the
            # agent reload and outlive the demo; the demo stops it with SIGTERM instead.
            start_new_session=True,
        )
    deadline = time.monotonic() + duration if duration else float("inf")
    socket = workdir / "agent.sock"
    try:
        if console.is_terminal:
            with Live(
                _screen(socket, subscriber, workdir), console=console, refresh_per_second=2
            ) as live:
                while time.monotonic() < deadline and agent.poll() is None:
                    time.sleep(1)
                    live.update(_screen(socket, subscriber, workdir))
        else:
            while time.monotonic() < deadline and agent.poll() is None:
                time.sleep(min(5, max(0.1, deadline - time.monotonic())))
                console.print(_screen(socket, subscriber, workdir))
    except KeyboardInterrupt:
        pass
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        code = agent.wait(30)
        subscriber.stop()
        broker.stop()
        if bureau is not None:
            bureau.terminate()
            bureau.wait(10)
        if simulator is not None:
            simulator.terminate()
            simulator.wait(10)
    text = _(
        "agent exited with {code}; the platform received {messages} messages "
        "({points} point values). Files: {files}"
    )
    counts = {"messages": subscriber.count, "points": subscriber.points}
    _say(console, text.format(code=code, files=workdir, **counts))
    if bureau is not None:
        received = (workdir / "bureau.log").read_text(errors="replace").splitlines()
        text = _("the environmental bureau received {count} minute, hour and day records (HJ 212)")
        _say(console, text.format(count=len(received)))
    return 0 if code == 0 else 1
