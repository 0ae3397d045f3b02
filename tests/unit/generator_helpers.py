"""Helpers shared by the generator unit tests: run the CLI in-process and capture its output."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from generator.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
AWS_ROLE = "arn:aws:iam::123456789012:role/launch-agent"
GCP_SA = "launch-agent@my-project.iam.gserviceaccount.com"
AZURE_ID = "11111111-2222-3333-4444-555555555555"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ=dict(environ or {}), stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return str(path)
