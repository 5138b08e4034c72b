"""A door process for the fleet fault test: logs N events locally while shipping them centrally.

    fleet_door.py EVENTS_DB CENTRAL_URL DOOR_ID TOTAL INTERVAL_S

Event i (0-based) has frame = i, so the central order can be checked against the local one.
Restarted after a SIGKILL it carries on from the events already in its log (as a door would:
what is logged is logged). Prints "done" once every event is written and acknowledged.
"""

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from door.events import Event, EventLog
from door.shipper import EventShipper


def main() -> int:
    db, url, door, total, interval = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    logging.basicConfig(level=logging.INFO, format=f"{door} %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    events = EventLog(db)
    shipper = EventShipper(db, url, door, interval=0.2, max_delay=2.0).start()
    start = events.last_seq()  # sequences start at 1: this many events were written before a restart
    for i in range(start, total):
        events.add(
            Event(
                time=time.time(),
                decision=("grant", "deny", "unknown")[i % 3],
                frame=i,
                track=i // 5,
                identity=f"person-{i % 7}",
                score=0.5 + (i % 50) / 100,
                reason=f"event {i}",
                source=door,
            )
        )
        shipper.notify()
        time.sleep(interval)
    deadline = time.monotonic() + 120
    while shipper.pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = shipper.pending()
    shipper.close(drain=0)
    events.close()
    print("done" if left == 0 else f"{left} events not shipped", flush=True)
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
