"""Bad input: one clear line per problem with file and line, exit code 2, no output written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from generator_helpers import run, write

GOOD_QUEUE = "metadata:\n  namespace: ml\n"


def _values(tmp_path: Path, config: str, *queues: str) -> tuple[int, list[str], Path]:
    out = tmp_path / "values.yaml"
    argv = ["values", "-c", config, "-o", str(out)]
    for q in queues:
        argv += ["-q", q]
    res = run(argv)
    assert "Traceback" not in res.err
    return res.code, res.lines, out


BAD_CONFIGS = {
    "syntax": ("queues: [a\n", r"syntax.yaml:2:1: YAML syntax error"),
    "tabs": ("queues:\n\t- a\n", r"tabs.yaml:2:1: tab character in indentation"),
    "wrong-type": ("queues: a\n", r"wrong-type.yaml:1:9: queues: expected array, got a string"),
    "unknown-key": ("queues: [a]\nmax_job: 2\n", r"unknown-key.yaml:2:1: max_job: unknown key; did you mean max_jobs?"),
    "empty": ("", r"empty.yaml:1:1: the file is empty"),
    "comments-only": ("# nothing\n", r"comments-only.yaml:1:1: the file is empty"),
    "not-a-mapping": ("- a\n- b\n", r"not-a-mapping.yaml:1:1: expected object, got a list"),
    "duplicate": ("queues: [a]\nqueues: [b]\n", r"duplicate.yaml:2:1: queues: duplicate key 'queues' \(first at line 1\)"),
    "two-docs": ("queues: [a]\n---\nqueues: [b]\n", r"two-docs.yaml:2:1: YAML syntax error"),
    "unknown-tag": ("queues: !secret [a]\n", r"unknown-tag.yaml:1:9: YAML syntax error: could not determine a constructor"),
    "control-char": ("queues: [a\x07]\n", r"control-char.yaml:1:11: character U\+0007 is not allowed"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_files(tmp_path: Path, name: str) -> None:
    import re

    text, pattern = BAD_CONFIGS[name]
    config = write(tmp_path, f"{name}.yaml", text)
    code, lines, out = _values(tmp_path, config)
    assert code == 2
    assert len(lines) == 1, lines
    assert re.search(pattern, lines[0]), lines[0]
    assert not out.exists()


def test_binary_junk(tmp_path: Path) -> None:
    path = tmp_path / "junk.yaml"
    path.write_bytes(b"queues: [a]\n" + bytes(range(256)) * 8)
    code, lines, out = _values(tmp_path, str(path))
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"{path}:2:1: binary data")
    assert not out.exists()


def test_latin1_text_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("queues: [caf\u00e9]\n".encode("latin-1"))
    code, lines, _ = _values(tmp_path, str(path))
    assert code == 2 and lines == [f"{path}:1:13: not UTF-8 text (byte 0xe9); expected a YAML text file"]


def test_huge_file_is_refused_by_size_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # sparse: refusing it must not need to read it
    code, lines, out = _values(tmp_path, str(path))
    assert code == 2 and len(lines) == 1
    assert "52428800 bytes is too large" in lines[0] and lines[0].startswith(str(path))
    assert not out.exists()


def test_missing_file_and_directory(tmp_path: Path) -> None:
    code, lines, out = _values(tmp_path, str(tmp_path / "nope.yaml"))
    assert code == 2 and lines == [f"{tmp_path / 'nope.yaml'}: no such file"]
    (tmp_path / "dir.yaml").mkdir()
    code, lines, _ = _values(tmp_path, str(tmp_path / "dir.yaml"))
    assert code == 2 and lines == [f"{tmp_path / 'dir.yaml'}: is a directory; expected a YAML file"]
    assert not out.exists()


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines_ = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = f"*a{i - 1}"
        lines_.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    config = write(tmp_path, "bomb.yaml", "\n".join(lines_) + "\nqueues: [q]\n")
    code, lines, _ = _values(tmp_path, config)
    assert code == 2 and len(lines) == 1 and "alias bomb" in lines[0]


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, "deep.yaml", "queues: " + "[" * 5000 + "]" * 5000 + "\n")
    code, lines, _ = _values(tmp_path, config)
    assert code == 2 and lines == [f"{config}: nested too deeply to be a config file"]


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    config = write(tmp_path, "c.yaml", "queues: [a]\nmax_jobs: many\nbuilder: {type: buildah}\n")
    queue = write(tmp_path, "q.yaml", "metdata: {}\nspec: 5\n")
    code, lines, out = _values(tmp_path, config, queue, str(tmp_path / "missing.yaml"))
    assert code == 2
    assert [line.split(": ")[0] for line in lines] == [
        f"{config}:2:11", f"{config}:3:17", f"{queue}:1:1", f"{queue}:2:7", f"{tmp_path / 'missing.yaml'}"]
    assert not out.exists()


def test_failed_run_leaves_an_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "values.yaml"
    out.write_text("keep: me\n")
    config = write(tmp_path, "c.yaml", "queues: []\n")
    res = run(["values", "-c", config, "-o", str(out)])
    assert res.code == 2 and res.lines == [f"{config}:1:9: queues: needs at least 1 entry"]
    assert out.read_text() == "keep: me\n"
    assert sorted(os.listdir(tmp_path)) == ["c.yaml", "values.yaml"]  # no temp file left behind


def test_bad_queue_files(tmp_path: Path) -> None:
    config = write(tmp_path, "c.yaml", "queues: [a]\n")
    cases = {
        "cr-without-kind.yaml": ("apiVersion: kubeflow.org/v1\nspec: {}\n", "1:1: missing required key 'kind'"),
        "job-kind.yaml": ("kind: Deployment\n", "1:7: kind: 'Deployment' is not allowed; must be 'Job'"),
        "bad-ns.yaml": ("metadata:\n  namespace: ML_Team\n", "2:14: metadata.namespace: 'ML_Team' is not valid"),
        "macro-ns.yaml": ("namespace: team-${project_name}\n",
                          "1:12: namespace: a namespace chosen by a macro cannot be granted ahead of time"),
        "containers.yaml": ("spec:\n  template:\n    spec:\n      containers: {image: x}\n",
                            "4:19: spec.template.spec.containers: expected array, got a mapping"),
    }
    for name, (text, expected) in cases.items():
        queue = write(tmp_path, name, text)
        code, lines, _ = _values(tmp_path, config, queue)
        assert code == 2 and len(lines) == 1, (name, lines)
        assert lines[0].startswith(f"{queue}:{expected}"), (name, lines[0])


def test_unquoted_template_variable_gets_a_hint(tmp_path: Path) -> None:
    config = write(tmp_path, "c.yaml", "queues: [a]\n")
    queue = write(tmp_path, "q.yaml", "spec:\n  backoffLimit: {{retries}}\n")
    code, lines, _ = _values(tmp_path, config, queue)
    assert code == 2 and lines == [f"{queue}:2:18: YAML syntax error: found unhashable key (while constructing a "
                                   "mapping); quote template variables: '{{name}}'"]
    queue = write(tmp_path, "q2.yaml", "metadata:\n  namespace: '{{ns}}'\n")
    code, lines, _ = _values(tmp_path, config, queue)
    assert code == 2 and lines == [f"{queue}:2:14: metadata.namespace: a namespace chosen by a template variable "
                                   "cannot be granted ahead of time; write the namespace name"]


def test_swapped_files_get_one_hint_each(tmp_path: Path) -> None:
    from generator_helpers import EXAMPLES

    queue, config = str(EXAMPLES / "queue-job.yaml"), str(EXAMPLES / "launch-config-noop.yaml")
    code, lines, out = _values(tmp_path, queue, config)
    assert code == 2 and lines == [
        f"{queue}:1:1: this looks like a queue config, not an agent config; give it with -q",
        f"{config}:1:1: this looks like an agent config, not a queue config; give it with -c",
    ]
    assert not out.exists()
