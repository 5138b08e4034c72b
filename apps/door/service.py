"""``door_access.py run``: build everything from the configuration, then feed frames until told to stop.

Start-up order matters on a door: the configuration, models, liveness, gallery, event log and
actions are all checked before the camera is opened, so a broken setup fails at once with a
clear message (and a non-zero exit systemd reports), while a missing camera is waited for.
SIGTERM (``systemctl stop``) and Ctrl-C end the loop cleanly: queued actions finish, the event
log and recording are closed.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from gfn_edge import IoUTracker

from .actions import ActionRunner, build_actions
from .config import Config, describe
from .decision import DecisionEngine
from .events import EventLog
from .models import SetupError, open_analyzer, open_gallery, open_liveness, resolve_threshold, warn_if_empty
from .pipeline import DoorLoop
from .snapshots import SnapshotWriter
from .sources import Backoff, FrameSource
from .video import Display, Recorder

log = logging.getLogger(__name__)

STATS_EVERY_S = 300.0


def _same_file(a: Any, b: Any) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def make_source(cfg: Config, latest_only: bool = True) -> FrameSource:
    s = cfg.source
    return FrameSource(
        s.uri,
        fps=s.fps,
        width=s.width,
        height=s.height,
        max_reconnects=s.max_reconnects,
        backoff=Backoff(s.reconnect_delay, s.reconnect_max_delay),
        read_timeout=s.read_timeout,
        latest_only=latest_only,
    )


class _Stopper:
    """SIGTERM / SIGINT: first one stops the loop gracefully, a second one interrupts at once."""

    def __init__(self, source: FrameSource):
        self.source = source
        self.stopping = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stopper:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (embedded use): leave signals alone
                pass
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.stopping:
            raise KeyboardInterrupt
        self.stopping = True
        log.info("%s received: stopping after this frame", signal.Signals(signum).name)
        self.source.close()

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run(cfg: Config) -> int:
    """Run the door until the source ends (files) or a signal arrives; 0 on a clean end."""
    log.info(describe(cfg))
    if _same_file(cfg.events.db, cfg.gallery.path):
        raise SetupError(f"the event log and the gallery are the same file ({cfg.gallery.path}); give each its own")
    analyzer = open_analyzer(cfg)
    liveness = open_liveness(cfg.models, cfg.liveness)
    if cfg.gallery.url is not None:  # a fleet door: the central gallery through a local replica (fleet.py)
        from .fleet import open_fleet_gallery

        gallery = open_fleet_gallery(cfg, analyzer.recognizer.signature, analyzer.recognizer.dim)
    else:
        gallery = open_gallery(cfg.gallery.path, analyzer.recognizer, create=True)
    warn_if_empty(gallery)
    gallery.refresh()
    threshold = resolve_threshold(cfg, gallery, analyzer.recognizer)
    actions = build_actions(cfg.actions, door_id=cfg.fleet.door_id)
    log.info("actions: %s", ", ".join(repr(a) for a in actions) or "none")
    snapshots = None
    if cfg.snapshots.dir is not None:
        snapshots = SnapshotWriter(cfg.snapshots.dir, cfg.snapshots.max_files, cfg.snapshots.quality)
    snapshot_on = [d for d in ("unknown", "deny", "grant") if getattr(cfg.snapshots, d)]
    source = make_source(cfg)
    display = Display(cfg.display.show)
    recorder = Recorder(cfg.display.record, cfg.display.record_fps) if cfg.display.record is not None else None
    events = EventLog(cfg.events.db)
    shipper = None
    if cfg.gallery.url is not None:
        from .fleet import start_shipper

        shipper = start_shipper(cfg)
    runner = ActionRunner(actions)
    try:
        events.prune(cfg.events.keep_days)
        engine = DecisionEngine(cfg.recognition.consecutive, cfg.decision.cooldown, threshold, liveness.threshold if liveness is not None else None)
        tracker = IoUTracker(cfg.tracking.iou_threshold, cfg.tracking.max_missed, cfg.tracking.min_hits)
        loop = DoorLoop(
            analyzer,
            gallery,
            threshold,
            engine,
            tracker,
            liveness=liveness,
            margin=cfg.recognition.margin,
            recheck_every=cfg.recognition.recheck_every,
            events=events,
            actions=runner,
            snapshots=snapshots,
            snapshot_on=snapshot_on,
            source_name=source.description,
            annotate=display.enabled or recorder is not None,
        )
        log.info("watching %s", source.description)
        last_stats = last_prune = time.monotonic()
        with _Stopper(source) as stopper:
            for frame in source:
                _, annotated = loop.process(frame)
                if annotated is not None:
                    if recorder is not None:
                        if recorder.fps is None:  # live: frames are dropped when busy, so not the camera's rate
                            recorder.fps = (source.fps or 10.0) if not source.live else 10.0
                        recorder.write(annotated)
                    display.show(annotated)
                    if display.quit_requested:
                        log.info("q pressed: stopping")
                        break
                now = time.monotonic()
                if now - last_stats >= STATS_EVERY_S:
                    last_stats = now
                    log.info("%d frames (%.1f fps), %d recognitions, decisions %s", loop.frames, loop.fps, loop.recognitions, loop.decisions or "none")
                if now - last_prune >= 86400:
                    last_prune = now
                    events.prune(cfg.events.keep_days)
            stopped = stopper.stopping
        runner.close()  # the last decisions' actions (and their log lines) before the summary
        log.info(
            "%s: %d frames, %d recognitions, decisions %s",
            "stopped" if stopped else "source ended",
            loop.frames,
            loop.recognitions,
            loop.decisions or "none",
        )
        return 0
    finally:
        runner.close()
        if recorder is not None:
            recorder.close()
        display.close()
        if shipper is not None:
            shipper.close()
        events.close()
        gallery.close()
