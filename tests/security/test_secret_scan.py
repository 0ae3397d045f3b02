"""The API-key scanner finds every planted copy of the key and reports none where the key belongs."""

from __future__ import annotations

import base64
import json

import pytest

from localenv.secretscan import SecretScan

KEY = "0123456789abcdef0123456789abcdef01234567"


def test_planted_leaks_are_found_and_masked():
    scan = SecretScan(KEY)
    scan.text("agent.log", f"starting\nTraceback (most recent call last):\n  api_key='{KEY}'\nok\n")
    scan.text("agent.log", f"token={KEY[:20]}...")  # truncated
    b64 = base64.b64encode(KEY.encode()).decode()
    scan.objects("cluster", [
        {"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"k": b64}},
        {"kind": "Job", "metadata": {"name": "j", "annotations": {"x": KEY}}},
        {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"env": [
            {"name": "WANDB_API_KEY", "value": KEY}]}]}},
        {"kind": "Event", "metadata": {"name": "e"}, "message": f"failed with {KEY}"},
    ])
    assert len(scan.leaks) == 6
    assert {leak.where for leak in scan.leaks if leak.source == "agent.log"} == {"line 3", "line 1"}
    assert all(KEY not in leak.excerpt and KEY[:16] not in leak.excerpt for leak in scan.leaks)
    with pytest.raises(AssertionError) as err:
        scan.assert_clean()
    assert KEY not in str(err.value) and "6 place(s)" in str(err.value)


def test_the_keys_own_secret_is_where_it_belongs():
    secret = {"kind": "Secret", "metadata": {"name": "wandb-api-key-r", "namespace": "n", "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps({"stringData": {"password": KEY}})}},
        "data": {"password": base64.b64encode(KEY.encode()).decode()}}
    scan = SecretScan(KEY)
    scan.objects("cluster", [secret], holders=["wandb-api-key-r"])
    scan.text("agent.log", "WANDB_API_KEY=<redacted>\n")
    scan.assert_clean()
    other = dict(secret, metadata={**secret["metadata"], "name": "copy"})
    scan.objects("cluster", [other], holders=["wandb-api-key-r"])
    assert scan.leaks


def test_short_secrets_are_refused():
    with pytest.raises(ValueError):
        SecretScan("abc")


def test_fixture_asserts_at_teardown(secret_scan):
    scan = secret_scan(KEY)
    scan.text("x", "nothing here")
    assert scan.scanned == {"x": 1}
