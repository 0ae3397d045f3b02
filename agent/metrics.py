"""Prometheus counters, gauges and latency summaries, rendered in the text exposition format."""

from __future__ import annotations

from collections import defaultdict


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in labels)
    return "{" + inner + "}"


class Metrics:
    PREFIX = "launch_agent_"

    def __init__(self) -> None:
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._gauges: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._sums: dict[str, dict[tuple[tuple[str, str], ...], list[float]]] = defaultdict(dict)
        self._help: dict[str, tuple[str, str]] = {}

    def _key(self, labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k, str(v)) for k, v in labels.items()))

    def inc(self, name: str, help_text: str, value: float = 1.0, **labels: str) -> None:
        self._help.setdefault(name, ("counter", help_text))
        series = self._counters[name]
        key = self._key(labels)
        series[key] = series.get(key, 0.0) + value

    def set(self, name: str, help_text: str, value: float, **labels: str) -> None:
        self._help.setdefault(name, ("gauge", help_text))
        self._gauges[name][self._key(labels)] = value

    def clear(self, name: str) -> None:
        self._gauges[name].clear()

    def observe(self, name: str, help_text: str, seconds: float, **labels: str) -> None:
        self._help.setdefault(name, ("summary", help_text))
        entry = self._sums[name].setdefault(self._key(labels), [0.0, 0.0])
        entry[0] += seconds
        entry[1] += 1

    def value(self, name: str, **labels: str) -> float:
        key = self._key(labels)
        for table in (self._counters, self._gauges):
            if key in table.get(name, {}):
                return table[name][key]
        return 0.0

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text) in sorted(self._help.items()):
            full = self.PREFIX + name
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
            if kind == "counter":
                for key, val in sorted(self._counters[name].items()):
                    lines.append(f"{full}{_labels(key)} {val:g}")
            elif kind == "gauge":
                for key, val in sorted(self._gauges[name].items()):
                    lines.append(f"{full}{_labels(key)} {val:g}")
            else:
                for key, (total, count) in sorted(self._sums[name].items()):
                    lines.append(f"{full}_sum{_labels(key)} {total:.6f}")
                    lines.append(f"{full}_count{_labels(key)} {count:g}")
        return "\n".join(lines) + "\n"
