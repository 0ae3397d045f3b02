"""A bounded log of the requests the emulator answered, per-operation counts, and the set
of distinct operations seen (name, type, variables, selected fields, sending client)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from typing import Any

_REDACTED_KEYS = frozenset({"_wandb_api_key", "password", "apiKey", "api_key"})


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<redacted>" if k in _REDACTED_KEYS else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class RequestLog:
    def __init__(self, limit: int = 5000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._counts: Counter[str] = Counter()
        self._operations: dict[str, dict[str, Any]] = {}
        self._seq = 0

    def record(
        self,
        operation: str,
        *,
        status: int,
        client: str,
        summary: dict[str, Any] | None = None,
        variables: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        with self._lock:
            self._seq += 1
            self._counts[operation] += 1
            self._entries.append(
                {
                    "seq": self._seq,
                    "time": time.time(),
                    "operation": operation,
                    "status": status,
                    "client": client,
                    "variables": redact(variables) if variables else {},
                    "error": error,
                }
            )
            if summary is not None and summary.get("type") in ("query", "mutation"):
                record = {**summary, "client": client}
                key = json.dumps(record, sort_keys=True)
                self._operations.setdefault(key, record)

    def entries(self, operation: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._entries if operation is None or e["operation"] == operation]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def operations(self) -> list[dict[str, Any]]:
        """The distinct operations seen, sorted so that the same traffic gives the same list."""
        with self._lock:
            found = list(self._operations.values())
        return sorted(found, key=lambda r: json.dumps(r, sort_keys=True))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._counts.clear()
            self._operations.clear()
