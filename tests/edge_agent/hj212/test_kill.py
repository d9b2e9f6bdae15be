"""The data logger SIGKILLed while it retransmits: after its restart the platform has every
record once as new data, the one in flight at most once more as a copy, nothing else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from edge_agent.hj212.spool import Spool
from simulators.hj212 import HJ212Platform
from tests.edge_agent.hj212.rig import MN, PW, T0, config, made_records, until
from tests.harness import REPO


def start(config_path: Path, store: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.edge_agent.hj212.logger_process", str(config_path),
         str(store)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


async def test_sigkill_during_retransmission_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    spool_path = tmp_path / "hj212.db"
    made = made_records(60)
    spool = Spool(spool_path)
    spool.make("p0", made, T0)
    spool.close()
    async with HJ212Platform(loggers={MN: PW}, ack_mode="drop-first-n", drop_first_n=1) as bureau:
        # Every packet's first copy goes unanswered: the logger is always retransmitting.
        cfg = config([bureau.port], spool_path, over_time=0.1, re_count=3, send=["minute"])
        config_path = tmp_path / "hj212.json"
        config_path.write_text(json.dumps(cfg.model_dump(mode="json")))
        logger = start(config_path, tmp_path / "outbox.db")
        try:
            await until(lambda: len(bureau.records(MN, "2051")) >= 20, timeout=60)
            os.kill(logger.pid, signal.SIGKILL)
            logger.wait(10)
            assert len(bureau.records(MN, "2051")) < 60  # killed half-way
            logger = start(config_path, tmp_path / "outbox.db")
            await until(lambda: len(bureau.records(MN, "2051")) == 60, timeout=120)
            await until(lambda: Spool(spool_path).backlog("p0").owed == 0, timeout=30)
        finally:
            logger.kill()
            logger.wait(10)
        counts = bureau.counts(MN)
        got = bureau.records(MN, "2051")
    assert list(got) == [record[1] for record in made]  # every one, in order
    assert counts.conflicts == 0
    # Copies, never new data: only the record in flight at the kill may come twice more
    # than the dropped first copies (which the platform ignored, so they are not counted).
    assert counts.duplicates <= 1
    assert len(bureau.records(MN, "2081")) == 2  # one restart time per start
