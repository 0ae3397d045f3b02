"""Problems found in user input, reported one per line as `FILE:LINE:COL: key.path: message`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any


def key_path(path: Sequence[Any]) -> str:
    """`builder.build-context-store`, `queues[0]`, `spec.template.spec.containers[1].image`."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input file (or with a combination of files and flags)."""

    file: str
    message: str
    line: int | None = None
    col: int | None = None
    key: str = ""
    warning: bool = False  # the input works, but probably not as meant; never changes the exit code

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        if self.warning:
            where += ": warning"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"

    def as_warning(self) -> Problem:
        return replace(self, warning=True)


def split(problems: Iterable[Problem]) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings)"""
    found = list(problems)
    return [p for p in found if not p.warning], [p for p in found if p.warning]


class InputError(Exception):
    """Bad input: the CLI prints each problem on its own line and exits with code 2."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
