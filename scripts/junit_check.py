"""Fail a test run whose JUnit report shows no tests, or a test skipped for a missing asset.

    python3 scripts/junit_check.py JUNIT.xml

pytest's exit status already says whether a test failed; a skip does not change it, and a test
skipped with "asset missing: ..." checked nothing. Used by .ci/run (the suite) and by
scripts/arm64_tests.sh (each emulated CPU).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    try:
        cases = list(ET.parse(path).getroot().iter("testcase"))
    except (OSError, ET.ParseError) as exc:
        print(f"junit_check: no readable JUnit report {path}: {exc}", file=sys.stderr)
        return 1
    missing = []
    for case in cases:
        for skip in case.findall("skipped"):
            reason = f"{skip.get('message') or ''} {skip.text or ''}".strip()
            if "asset missing:" in reason:
                missing.append(f"{case.get('classname')}::{case.get('name')}: {reason[:300]}")
    skipped = sum(1 for c in cases if c.find("skipped") is not None)
    seconds = sum(float(c.get("time") or 0) for c in cases)
    print(f"pytest report: {len(cases)} tests, {skipped} skipped, {len(missing)} for missing assets, {seconds:.0f}s in tests")
    if not cases:
        print("junit_check: the run collected no tests", file=sys.stderr)
        return 1
    if missing:
        print("junit_check: skipped for a missing asset:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]) if len(sys.argv) == 2 else "usage: junit_check.py JUNIT.xml")
