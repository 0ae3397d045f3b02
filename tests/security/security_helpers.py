"""Helpers of the security tests: a raw API client, the results directory for `make reliability`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localenv import results
from localenv.pytest_plugin import Kube

ROOT = Path(__file__).resolve().parents[2]


def write_figures(name: str, figures: dict[str, Any]) -> Path:
    """`security-<name>.json` in the results directory that `make reliability` prints."""
    return results.write(f"security-{name}", figures)


class Api:
    """Raw JSON requests to the API server as the admin (no model classes: bodies go as written)."""

    def __init__(self, kube: Kube) -> None:
        from kubernetes import config

        self.client = config.new_client_from_config(str(kube.kubeconfig))

    def request(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
                content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        from kubernetes.client.rest import ApiException

        try:
            method_, url, headers, data, _ = self.client.param_serialize(
                method, path, query_params=query or [], body=body, auth_settings=["BearerToken"],
                header_params={"Content-Type": content_type, "Accept": "application/json"})
            resp = self.client.call_api(method_, url, header_params=headers, body=data, _request_timeout=60)
            resp.read()
            text = resp.data
            if resp.status >= 400:
                raise ApiException(http_resp=resp)
            return resp.status, json.loads(text) if text else {}
        except ApiException as exc:
            try:
                return exc.status, json.loads(exc.body or "{}")
            except ValueError:
                return exc.status, {"message": str(exc.body)}
