"""Figures that test suites leave for `make reliability` to print: one JSON file per topic in the
results directory, `$LAUNCH_AGENT_RESULTS_DIR` or `build/results` of the repository.

A file holds a dict of figures; one with a `"figures"` key (and per-test details beside it) shows
only those. `python -m localenv.results` prints every file there, in name order, so a new suite's
figures appear without a change here; it exits 1 when there is none."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def results_dir() -> Path:
    path = Path(os.environ.get("LAUNCH_AGENT_RESULTS_DIR") or REPO / "build" / "results")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write(name: str, figures: dict[str, Any]) -> Path:
    """`<results>/<name>.json`, replaced whole (never half-written)."""
    path = results_dir() / f"{name}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read(name: str) -> dict[str, Any] | None:
    path = results_dir() / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def names() -> list[str]:
    """The results present, in name order."""
    return sorted(p.stem for p in results_dir().glob("*.json"))


def clear() -> None:
    """Remove every result, so a run shows only what it measured."""
    for path in results_dir().glob("*.json"):
        path.unlink(missing_ok=True)


def figures(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of one result: nested dicts give dotted labels."""
    shown = doc["figures"] if isinstance(doc.get("figures"), dict) else doc
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key in sorted(value, key=str):
                walk(f"{prefix}.{key}" if prefix else str(key), value[key])
        else:
            rows.append((prefix, value if isinstance(value, str) else json.dumps(value)))

    walk("", shown)
    return rows


def main() -> int:
    rows = [(name, label, value) for name in names() for label, value in figures(read(name) or {})]
    if not rows:
        print(f"no results in {results_dir()}: run the suites first", file=sys.stderr)
        return 1
    width = max(len(r[1]) for r in rows)
    name_width = max(len(r[0]) for r in rows)
    print(f"{'suite':<{name_width}}  {'figure':<{width}}  value")
    for name, label, value in rows:
        print(f"{name:<{name_width}}  {label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
