"""A separate process that keeps writing and acknowledging telemetry in an outbox, as a
running agent does: readers must cope with it (argv[1]: the store, argv[2]: seconds
between polls)."""

from __future__ import annotations

import textwrap

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from edge_agent.points import Batch, Reading, wall_ms
    from edge_agent.store.outbox import Lane, Outbox, Record, TrafficClass

    box = Outbox(Path(sys.argv[1]), 10**12, 86400.0)
    print("ready", flush=True)
    i = 0
    while True:
        ts = wall_ms()
        batch = Batch("d", ts, tuple(Reading(f"p{j}", i + j, ts) for j in range(20)))
        box.append([Record(TrafficClass.TELEMETRY, "d", ts, batch=batch)])
        if i % 2:
            box.ack([r.id for r in box.lease(Lane.LIVE, 10)])
        i += 1
        time.sleep(float(sys.argv[2]))
    """
)
