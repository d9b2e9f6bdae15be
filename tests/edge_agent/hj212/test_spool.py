"""The spool keeps what each platform is owed, once, across restarts."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

from edge_agent.hj212.spool import Spool


def record(n: int, cn: str = "2051") -> tuple[str, str, str, str]:
    return (
        cn,
        f"20261206{n:06d}",
        f"20261206{n:06d}000",
        f"DataTime=20261206{n:06d};w01018-Avg={n}",
    )


def test_a_record_is_made_once_and_owed_until_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "hj212.db")
    assert spool.make("province", [record(1), record(2)], 0, ("minute", 1000)) == 2
    assert spool.make("province", [record(2), record(3)], 0, ("minute", 2000)) == 1
    assert spool.mark("province", "minute") == 2000
    owed = spool.owed("province")
    assert [o.data_time[-6:] for o in owed] == ["000001", "000002", "000003"]
    spool.ack(owed[0].id, 10)
    assert [o.data_time[-6:] for o in spool.owed("province")] == ["000002", "000003"]
    assert spool.owed("city") == []  # every platform has its own
    backlog = spool.backlog("province")
    assert (backlog.owed, backlog.acked, backlog.oldest_data_time) == (2, 1, "20261206000002")


def test_resend_owes_acked_records_again_with_their_qn(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "hj212.db")
    spool.make("p", [record(n) for n in range(1, 5)] + [record(9, "2061")], 0)
    for owed in spool.owed("p"):
        spool.ack(owed.id, 5)
    assert spool.resend("p", "20261206000003", ("2051",)) == 2
    again = spool.owed("p")
    assert [(o.data_time[-6:], o.qn) for o in again] == [
        ("000003", "20261206000003000"),
        ("000004", "20261206000004000"),
    ]


def test_prune_forgets_only_old_acked_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "hj212.db")
    spool.make("p", [record(1), record(2), record(3)], 0)
    first, second, _third = spool.owed("p")
    spool.ack(first.id, 100)
    spool.ack(second.id, 900)
    assert spool.prune(500) == 1
    assert [o.data_time[-1] for o in spool.owed("p")] == ["3"]
    assert spool.records("p", "2051", "0", "9")[0].data_time.endswith("2")


def test_settings_persist(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "hj212.db")
    spool.set("p", password="654321", minute_interval="5")
    spool.close()
    assert Spool(tmp_path / "hj212.db").settings("p") == {
        "password": "654321",
        "minute_interval": "5",
    }


def _make_forever(path: Path, ready: multiprocessing.synchronize.Event) -> None:
    spool = Spool(path)
    n = 0
    while True:
        n += 1
        spool.make("p", [record(n)], 0, ("minute", n))
        if n == 50:
            ready.set()


def test_a_killed_writer_leaves_records_and_marks_in_step(tmp_path: Path) -> None:
    # SIGKILL in the middle of making: every committed record has its watermark with it.
    path = tmp_path / "hj212.db"
    ready = multiprocessing.get_context("fork").Event()
    writer = multiprocessing.get_context("fork").Process(target=_make_forever, args=(path, ready))
    writer.start()
    assert ready.wait(20)
    os.kill(writer.pid or 0, signal.SIGKILL)
    writer.join()
    spool = Spool(path)
    made = len(spool.records("p", "2051", "0", "9"))
    assert made >= 50 and spool.mark("p", "minute") == made
