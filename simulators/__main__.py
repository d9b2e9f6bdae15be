"""python -m simulators --config configs/sim/hospital.yaml [--speed 60] [--seed 1]

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 bad config, 2 bad command line (click),
3 a device server could not start. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from simulators.errors import EXIT_CONFIG, EXIT_START, ServerStartError
from simulators.site import PlantSite, load_sim_config


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, exists=True),
    default=Path(__file__).resolve().parents[1] / "configs" / "sim" / "hospital.yaml",
    show_default=True,
    help="Simulator configuration.",
)
@click.option("--speed", type=float, default=None, help="Simulated seconds per real second.")
@click.option("--seed", type=int, default=None, help="Random seed (deterministic runs).")
@click.option(
    "--control",
    "control_file",
    type=click.Path(path_type=Path),
    default=None,
    help="JSON file of faults, re-read when it changes (see PlantSite.apply_faults).",
)
def main(
    config_path: Path, speed: float | None, seed: int | None, control_file: Path | None
) -> None:
    """Run the simulated hospital plant room until SIGTERM or Ctrl-C."""
    try:
        config, base = load_sim_config(config_path)
        given = {"speed": speed, "seed": seed, "control_file": control_file}
        overrides = {k: v for k, v in given.items() if v is not None}
        site = PlantSite(config.model_copy(update=overrides), base)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        click.echo(f"error: {config_path}: {problems}", err=True)
        sys.exit(EXIT_CONFIG)
    except (OSError, ValueError) as exc:
        click.echo(f"error: {config_path}: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        asyncio.run(_serve(site))
    except ServerStartError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_START)


async def _serve(site: PlantSite) -> None:
    """Serve until cancelled; ServerStartError (after stopping what had started) if a
    device server cannot start."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_cancelled)
    task = asyncio.current_task()
    assert task is not None, "a coroutine run by asyncio.run is a task"
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    ready = asyncio.Event()
    runner = asyncio.create_task(site.run(ready))
    started = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait({runner, started}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            ports = ", ".join(
                f"{k} {v.transport}:{v.port or v.serial_port}" for k, v in site.modbus.items()
            )
            click.echo(
                f"simulator ready: modbus {ports}; bacnet "
                + ", ".join(f"{k} {v.address}" for k, v in site.bacnet.items()),
                err=True,
            )
        await runner  # raises ServerStartError if a server failed
    except asyncio.CancelledError:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    finally:
        started.cancel()


def _quiet_cancelled(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """A library callback that meets a cancelled task at shutdown (bacpypes3's bind retry,
    cancelled by a failed start) is not worth a traceback; anything else is."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


if __name__ == "__main__":
    main()
