"""How every gfn-edge command-line tool ends on an error: ``PROG: error: <one line>``, no traceback.

Why one place: a user who mistypes a path or a threshold should read one line saying what is
wrong, whichever tool they ran, and a script should get a non-zero exit status. ``--debug``
(anywhere on the command line) adds the traceback for bug reports. An exception that is not one
of the SDK's own (a bug, or an error nobody translated yet) is reported as such, with exit
status 3, so it is never mistaken for a handled error.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence

from .errors import GfnEdgeError

DEBUG_FLAG = "--debug"
UNEXPECTED_STATUS = 3


def pop_debug(argv: Sequence[str] | None) -> tuple[list[str], bool]:
    """``argv`` (default ``sys.argv[1:]``) without ``--debug``, and whether it was there (not after ``--``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    debug = DEBUG_FLAG in args[:end]
    return [a for i, a in enumerate(args) if not (i < end and a == DEBUG_FLAG)], debug


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (several lines joined with '; ')."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and not isinstance(exc, GfnEdgeError) and len(exc.args) == 1:
        text = f"missing key {exc.args[0]!r}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def run_cli(
    prog: str,
    main: Callable[[list[str]], int],
    argv: Sequence[str] | None = None,
    expected: tuple[type[BaseException], ...] = (),
    error_status: int = 1,
) -> int:
    """Run ``main(argv)``; turn what escapes it into one line on stderr and an exit status.

    ``expected``: the tool's own error types besides :class:`GfnEdgeError` (exit ``error_status``).
    """
    args, debug = pop_debug(argv)
    try:
        return int(main(args))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (GfnEdgeError, OSError, *expected) as exc:  # OSError: permissions, a full disk ...
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return error_status
    except Exception as exc:
        if debug:
            traceback.print_exc()
        hint = "" if debug else "; run again with --debug for the traceback"
        print(f"{prog}: error: unexpected {type(exc).__name__}: {one_line(exc)} (a bug in {prog}{hint})", file=sys.stderr)
        return UNEXPECTED_STATUS
