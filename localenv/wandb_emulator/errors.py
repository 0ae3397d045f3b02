"""The error every emulator module raises for a request the backend refuses."""

from __future__ import annotations


class StateError(Exception):
    """A request the backend refuses; reported to the client as a GraphQL error."""
