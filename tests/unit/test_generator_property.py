"""Property: for any generated input, `values` never raises; it either writes schema-valid values or
reports problems in the FILE:LINE:COL format with exit code 2 and writes nothing."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from generator_helpers import run
from generator_strategies import agent_configs, dump, queue_configs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas

PROBLEM_LINE = re.compile(r"^(?:[^:\s]+\.yaml(?::\d+:\d+)?|--[a-z-]+): \S")
ENV = {"AZ_KEY": "storage-key"}


def _run(tmp: Path, config_text: str, queues: list[str], flags: list[str], ns: str | None) -> Any:
    argv = ["values", "-c", str(tmp / "launch-config.yaml"), "-o", str(tmp / "values.yaml"), *flags]
    (tmp / "launch-config.yaml").write_text(config_text)
    for i, text in enumerate(queues):
        (tmp / f"queue{i}.yaml").write_text(text)
        argv += ["-q", str(tmp / f"queue{i}.yaml")]
    if ns:
        argv += ["--namespace", ns]
    return run(argv, ENV)


def _check(res: Any, tmp: Path, config_text: str) -> None:
    assert res.code in (0, 2), res.err
    assert "Traceback" not in res.err
    out = tmp / "values.yaml"
    if res.code == 0:
        data = yaml.safe_load(out.read_text())
        assert schemas.validator("values").is_valid(data)
        assert data["launchConfig"] == config_text.removeprefix("\ufeff").replace("\r\n", "\n")
    else:
        assert not out.exists()
        assert res.lines and all(PROBLEM_LINE.match(line) for line in res.lines), res.lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agent_configs(), st.lists(queue_configs(), max_size=3), st.one_of(st.none(), st.just("launch")))
def test_values_never_crash(cfg: tuple[dict[str, Any], list[str]], queues: list[dict[str, Any]],
                            ns: str | None) -> None:
    config, flags = cfg
    text = dump(config)
    with tempfile.TemporaryDirectory(prefix="gen-prop-") as tmp:
        res = _run(Path(tmp), text, [dump(q) for q in queues], flags, ns)
        _check(res, Path(tmp), text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80), st.binary(max_size=40))
def test_arbitrary_text_never_crashes(text: str, raw: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="gen-prop-") as name:
        tmp = Path(name)
        _check(_run(tmp, text, [], [], None), tmp, text)
        (tmp / "values.yaml").unlink(missing_ok=True)
        (tmp / "launch-config.yaml").write_bytes(raw)
        res = run(["values", "-c", str(tmp / "launch-config.yaml"), "-o", str(tmp / "values.yaml")])
        assert res.code in (0, 2) and "Traceback" not in res.err


_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.text(max_size=6)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(st.sampled_from(
                                                 ["spec", "template", "containers", "metadata", "name", "image",
                                                  "env", "namespace", "labels", "kind", "apiVersion", "x"]),
                                                 inner, max_size=3)),
                     max_leaves=12)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(queue_configs(), st.dictionaries(st.sampled_from(["spec", "metadata", "kind", "apiVersion",
                                                                    "namespace", "kubernetes"]), _json, max_size=4)))
def test_validate_and_queue_never_crash(queue: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="gen-prop-") as name:
        path = Path(name) / "queue.yaml"
        path.write_text(dump(queue))
        for argv in (["validate", str(path)], ["validate", "--as", "values", str(path)], ["queue", "-q", str(path)]):
            res = run(argv)
            assert res.code in (0, 2), (argv, res.err)
            if res.code == 2:
                assert res.lines and all(PROBLEM_LINE.match(line) or line.startswith(str(path))
                                         for line in res.lines), res.lines
