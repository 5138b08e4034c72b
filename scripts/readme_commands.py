"""Print the commands of one README block, one per line: what CI runs and the tests check.

A block is the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in README.md (the
``quickstart`` and ``arm64`` blocks); its commands are its non-empty lines that are neither code
fences nor comments. `.ci/run` runs them and tests/test_arm64.py reads them through this one
parser, so what the test checks is what CI runs.

    python scripts/readme_commands.py quickstart [README.md]

Exit status 2, with a line on stderr, when the block is missing or holds no command.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


class BlockMissing(ValueError):
    """The README has no such block, or it holds no command."""


def block_commands(name: str, readme: Path = README) -> list[str]:
    """The command lines of block ``name`` of ``readme``, stripped, in order."""
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise BlockMissing(f"a block name is lower-case letters, digits, '-' or '_', not {name!r}")
    blocks = re.findall(rf"<!-- {name}:begin -->(.*?)<!-- {name}:end -->", readme.read_text(encoding="utf-8"), re.S)
    if not blocks:
        raise BlockMissing(f"{readme.name} has no <!-- {name}:begin --> ... <!-- {name}:end --> block")
    if len(blocks) > 1:  # CI would run the first and the reader of the second would not know
        raise BlockMissing(f"{readme.name} has {len(blocks)} <!-- {name}:begin --> blocks; a block name is used once")
    lines = [line.strip() for line in blocks[0].splitlines()]
    commands = [line for line in lines if line and not line.startswith(("```", "#"))]
    if not commands:
        raise BlockMissing(f"no commands between the {name} markers in {readme.name}")
    return commands


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: readme_commands.py BLOCK [README]", file=sys.stderr)
        return 2
    try:
        commands = block_commands(argv[0], Path(argv[1]) if len(argv) == 2 else README)
    except (BlockMissing, OSError) as exc:
        print(f"readme_commands: {exc}", file=sys.stderr)
        return 2
    print("\n".join(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
