"""A data logger alone in its process, for the tests that SIGKILL it:
python -m tests.edge_agent.hj212.logger_process CONFIG.json STORE"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from edge_agent.cache import PointCache
from edge_agent.hj212.config import Hj212
from edge_agent.hj212.reporter import Hj212Reporter
from tests.edge_agent.hj212.rig import Events


async def main(config_path: Path, store: Path) -> None:
    config = Hj212.model_validate(json.loads(config_path.read_text()))
    reporter = Hj212Reporter(config, store, PointCache(), Events(), {"sewage": 10.0})
    print("logger running", flush=True)
    await reporter.run()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
