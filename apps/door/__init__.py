"""Building blocks of the door-access app (``apps/door_access.py``), one job per module.

- :mod:`door.config`    TOML configuration, defaults, validation, flag overrides
- :mod:`door.sources`   frames from a camera, a stream, a video file or a folder; reconnection
- :mod:`door.models`    opening bundles, liveness and the gallery from a configuration
- :mod:`door.decision`  grant / deny / unknown from recognition results (pure logic)
- :mod:`door.service`   ``run``: build everything from the config, feed frames, stop on SIGTERM
- :mod:`door.pipeline`  the per-frame loop: detect, track, recognise, decide, act, log
- :mod:`door.actions`   what a decision triggers: log line, command, GPIO relay
- :mod:`door.events`    the SQLite event log and its queries
- :mod:`door.snapshots` JPEG evidence of unknown / denied faces, with a cap on disk use
- :mod:`door.draw`      boxes, names and FPS on frames (also used by ``apps/annotate.py``)
- :mod:`door.video`     the optional window and the annotated recording
- :mod:`door.enroll`    enrolment from photos or from the camera
- :mod:`door.calibrate` FAR/FRR on labelled photos and a suggested threshold

Only the public ``gfn_edge`` API is used: no export code, no training frameworks.
"""
