"""python -m simulators --config configs/sim/hospital.yaml [--speed 60] [--seed 1]"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import click
from pydantic import ValidationError

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
    except (ValidationError, OSError, ValueError) as exc:
        click.echo(f"error: {config_path}: {exc}", err=True)
        sys.exit(1)
    asyncio.run(_serve(site))


async def _serve(site: PlantSite) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    ready = asyncio.Event()
    runner = asyncio.create_task(site.run(ready))
    await ready.wait()
    ports = ", ".join(
        f"{k} {v.transport}:{v.port or v.serial_port}" for k, v in site.modbus.items()
    )
    click.echo(
        f"simulator ready: modbus {ports}; bacnet "
        + ", ".join(f"{k} {v.address}" for k, v in site.bacnet.items()),
        err=True,
    )
    try:
        await runner
    except asyncio.CancelledError:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


if __name__ == "__main__":
    main()
