"""Field-by-field comparison of two workloads launched from the same queue item, one by the official
agent and one by ours, and the allow-list of deliberate differences.

The allow-list is the table "Deliberate differences from the official agent" in agent/README.md:
its `fields` column names, in backticks, the fields each row allows to differ, as
``<kinds>/<source types>: <field>``; kinds and source types are comma-separated or ``*``, and
``*`` in the field matches any text. Rows without fields are not visible in a workload (the
agent's own requests, PVC mode, ...). Compared per pod template: each container's (and init
container's) image, command, args, workingDir, env (names, and how each value is given: ``value``,
``secretKeyRef``, ...), volumeMounts by name; the volumes by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.manifest import pod_templates

README = Path(__file__).resolve().parents[1] / "agent" / "README.md"
HEADING = "### Deliberate differences from the official agent (wandb 0.31.0) for jobs"
CONTAINER_FIELDS = ("image", "command", "args", "workingDir")


@dataclass(frozen=True)
class Difference:
    where: str  # <kind>/<source type>, e.g. "PyTorchJob/artifact"
    field: str  # e.g. "initContainers[wandb-source-code-init].image"
    official: Any
    ours: Any

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: official {self.official!r}, ours {self.ours!r}"


@dataclass(frozen=True)
class Allowed:
    row: str  # the row's "what"
    kinds: tuple[str, ...]
    types: tuple[str, ...]
    field: re.Pattern[str]
    text: str

    def allows(self, diff: Difference) -> bool:
        kind, _, source = diff.where.partition("/")
        return ((self.kinds == ("*",) or kind in self.kinds) and (self.types == ("*",) or source in self.types)
                and bool(self.field.fullmatch(diff.field)))


def _env_source(entry: dict[str, Any]) -> str:
    source = entry.get("valueFrom")
    if isinstance(source, dict) and source:
        return next(iter(source))
    return "value"


def _container(out: dict[str, Any], prefix: str, container: dict[str, Any]) -> None:
    for key in CONTAINER_FIELDS:
        if container.get(key) not in (None, []):
            out[f"{prefix}.{key}"] = container[key]
    for entry in container.get("env") or []:
        out[f"{prefix}.env[{entry['name']}]"] = _env_source(entry)
    for mount in container.get("volumeMounts") or []:
        out[f"{prefix}.volumeMounts[{mount['name']}]"] = mount


def pod_fields(workload: dict[str, Any]) -> dict[str, Any]:
    """The compared fields of every pod template, flattened to ``field -> value``."""
    templates = list(pod_templates(workload))
    out: dict[str, Any] = {}
    for n, template in enumerate(templates):
        at = f"templates[{n}]." if len(templates) > 1 else ""
        spec = template["spec"]
        for i, container in enumerate(spec.get("containers") or []):
            _container(out, f"{at}containers[{i}]", container)
        for container in spec.get("initContainers") or []:
            _container(out, f"{at}initContainers[{container.get('name')}]", container)
        for volume in spec.get("volumes") or []:
            out[f"{at}volumes[{volume['name']}]"] = volume
    return out


def differences(where: str, official: dict[str, Any], ours: dict[str, Any]) -> list[Difference]:
    theirs, mine = pod_fields(official), pod_fields(ours)
    return [Difference(where, key, theirs.get(key), mine.get(key)) for key in sorted(set(theirs) | set(mine))
            if theirs.get(key) != mine.get(key)]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _field_pattern(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in text.split("*")))


def allowed(readme: Path = README) -> list[Allowed]:
    """The fields the README's table of deliberate differences allows to differ."""
    lines = readme.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADING))
    table: list[str] = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    header = _cells(table[0])
    what, fields = header.index("what"), header.index("fields")
    found = []
    for line in table[2:]:
        cells = _cells(line)
        for text in re.findall(r"`([^`]+)`", cells[fields]):
            scope, sep, field = text.partition(": ")
            kinds, slash, types = scope.partition("/")
            if not sep or not slash or not field:
                raise ValueError(f"{readme.name}: {text!r} is not <kinds>/<source types>: <field>")
            found.append(Allowed(cells[what], tuple(kinds.split(",")), tuple(types.split(",")),
                                 _field_pattern(field), text))
    return found


def unlisted(diffs: Iterable[Difference], rules: list[Allowed]) -> list[Difference]:
    """The differences no row of the table allows."""
    return [d for d in diffs if not any(rule.allows(d) for rule in rules)]


def unused(diffs: Iterable[Difference], rules: list[Allowed]) -> list[Allowed]:
    """The rules that allow none of the differences (a row that no longer describes the agents)."""
    seen = list(diffs)
    return [rule for rule in rules if not any(rule.allows(d) for d in seen)]
