"""Fault injection per operation: added latency, an HTTP error status, an in-band GraphQL
error, a dropped connection (the request is not processed), or a lost response (the request
is processed, then the connection is dropped before the answer: what a client sees when an
answer is lost on the way). Rules match an operation name (``*`` matches any; the non-GraphQL
routes are named ``file_stream`` and ``upload``) and may fire a limited number of times."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = ("latency", "status", "graphql_error", "drop", "lose_response")


class FaultSpecError(ValueError):
    """A fault rule that cannot be installed."""


@dataclass
class FaultRule:
    id: int
    operation: str
    kind: str
    seconds: float = 0.0
    status: int = 500
    message: str = "injected fault"
    times: int | None = None
    fired: int = 0

    def matches(self, operation: str) -> bool:
        return self.operation in ("*", operation) and (self.times is None or self.fired < self.times)


@dataclass
class FaultDecision:
    """What to do with one request: sleep first, then maybe fail in one way."""

    delay: float = 0.0
    status: int | None = None
    graphql_error: str | None = None
    drop: bool = False
    lose_response: bool = False


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 0

    def add(self, spec: dict[str, Any]) -> FaultRule:
        operation = spec.get("operation")
        kind = spec.get("kind")
        if not isinstance(operation, str) or not operation:
            raise FaultSpecError("fault: 'operation' must be an operation name or '*'")
        if kind not in FAULT_KINDS:
            raise FaultSpecError(f"fault: 'kind' must be one of {', '.join(FAULT_KINDS)}")
        times = spec.get("times")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise FaultSpecError("fault: 'times' must be a positive integer or absent (always)")
        seconds = spec.get("seconds", 0.0)
        if not isinstance(seconds, int | float) or seconds < 0:
            raise FaultSpecError("fault: 'seconds' must be a non-negative number")
        status = spec.get("status", 500)
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultSpecError("fault: 'status' must be an HTTP status from 400 to 599")
        with self._lock:
            self._next_id += 1
            rule = FaultRule(
                id=self._next_id,
                operation=operation,
                kind=kind,
                seconds=float(seconds),
                status=status,
                message=str(spec.get("message", "injected fault")),
                times=times,
            )
            self._rules.append(rule)
            return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]

    def decide(self, operation: str) -> FaultDecision:
        decision = FaultDecision()
        with self._lock:
            if not self._rules:
                return decision
            for rule in self._rules:
                if not rule.matches(operation):
                    continue
                if rule.kind == "latency":
                    decision.delay += rule.seconds
                elif decision.status is None and decision.graphql_error is None and not decision.drop:
                    if rule.kind == "status":
                        decision.status = rule.status
                    elif rule.kind == "graphql_error":
                        decision.graphql_error = rule.message
                    elif rule.kind == "lose_response":
                        if decision.lose_response:
                            continue
                        decision.lose_response = True
                    else:
                        decision.drop = True
                else:
                    continue
                rule.fired += 1
        return decision
