"""Print the figures the fault and security suites wrote (`make reliability`).

The contract: each suite writes `$LAUNCH_AGENT_RESULTS/<suite>.json` (default `.results/`) as
``{"suite": "<name>", "figures": {"<label>": <number or text>, ...}}``; anything else in the file
(per-test details) is kept for readers but not printed. This prints every file found, in name
order, so a new suite's figures appear without a change here; exit 1 when none is there."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    results = Path(os.environ.get("LAUNCH_AGENT_RESULTS") or ROOT / ".results")
    files = sorted(results.glob("*.json")) if results.is_dir() else []
    if not files:
        print(f"no results in {results}: run the suites first", file=sys.stderr)
        return 1
    rows: list[tuple[str, str, str]] = []
    for path in files:
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            print(f"{path}: not JSON, skipped", file=sys.stderr)
            continue
        suite = str(doc.get("suite") or path.stem)
        for label, value in (doc.get("figures") or {}).items():
            rows.append((suite, str(label), str(value)))
    width = max((len(r[1]) for r in rows), default=10)
    suite_width = max((len(r[0]) for r in rows), default=5)
    print(f"{'suite':<{suite_width}}  {'figure':<{width}}  value")
    for suite, label, value in rows:
        print(f"{suite:<{suite_width}}  {label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
