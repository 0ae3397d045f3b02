"""The one error type of the manifest builder."""

from __future__ import annotations


class ManifestError(Exception):
    """A queue config or run spec the agent refuses; `rule` names what it broke."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message
