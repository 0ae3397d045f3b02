"""Dockerfile choice and generation, the context archive and the image tag (pure, no servers)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from agent.build import context, dockerfile
from agent.build.source import BuildError, BuildSource, python_minor


def _source(tmp_path: Path, files: dict[str, str], **kw: object) -> BuildSource:
    code = tmp_path / "code"
    for name, text in files.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(text)
    code.mkdir(exist_ok=True)
    defaults: dict[str, object] = {"source_string": "job-x:v3", "directory": code,
                                   "entrypoint": ("python", "train.py"), "python_version": "3.11"}
    defaults.update(kw)
    return BuildSource(**defaults)  # type: ignore[arg-type]


def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _read(archive: Path, name: str) -> str:
    with tarfile.open(archive, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read().decode()


def test_tag_is_the_official_agents(tmp_path: Path) -> None:
    from wandb.sdk.launch.builder.build import image_tag_from_dockerfile_and_source

    class Project:
        @staticmethod
        def get_image_source_string() -> str:
            return "job-x:v3"

    dockerfile_text = "FROM python:3.11\nCOPY . .\n"
    src = _source(tmp_path, {"train.py": "print(1)\n", "Dockerfile": dockerfile_text}, dockerfile="Dockerfile")
    ctx = context.create(src, tmp_path / "work")
    assert ctx.tag == image_tag_from_dockerfile_and_source(Project(), dockerfile_text)  # type: ignore[arg-type]
    assert ctx.dockerfile.kind == "job"
    assert _read(ctx.archive, "Dockerfile.wandb") == dockerfile_text


def test_selection_order_override_job_beside_generated(tmp_path: Path) -> None:
    files = {"train.py": "", "Dockerfile.job": "FROM a\n", "Dockerfile.over": "FROM b\n",
             "sub/Dockerfile.wandb": "FROM c\n", "sub/run.py": ""}
    src = _source(tmp_path, files, dockerfile="Dockerfile.job", override_dockerfile="Dockerfile.over")
    assert dockerfile.choose(src).text == "FROM b\n"
    src = _source(tmp_path, files, dockerfile="Dockerfile.job")
    assert dockerfile.choose(src).text == "FROM a\n"
    beside = dockerfile.choose(_source(tmp_path, files, entrypoint=("python", "sub/run.py")))
    assert (beside.kind, beside.text, beside.entrypoint) == ("beside-entrypoint", "FROM c\n", ("python", "run.py"))
    assert beside.context_root.name == "sub"
    assert dockerfile.choose(_source(tmp_path, files)).kind == "generated"


def test_a_dockerfile_outside_the_code_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="outside the job's code"):
        dockerfile.choose(_source(tmp_path, {"train.py": ""}, dockerfile="../../etc/passwd"))
    with pytest.raises(BuildError, match="does not exist"):
        dockerfile.choose(_source(tmp_path, {"train.py": ""}, dockerfile="Nope"))


def test_generated_dockerfile_layout(tmp_path: Path) -> None:
    src = _source(tmp_path, {"train.py": "", "requirements.txt": "numpy\n"}, user_id=1234)
    ctx = context.create(src, tmp_path / "work")
    text = ctx.dockerfile.text
    assert "FROM python:3.11 AS deps" in text and "FROM python:3.11-slim AS run" in text
    assert "RUN pip install -r /tmp/requirements.txt" in text
    assert "USER 1234" in text and 'ENTRYPOINT ["python", "train.py"]' in text
    names = _members(ctx.archive)
    assert {"src/train.py", "src/requirements.txt", "Dockerfile.wandb"} <= set(names)


def test_requirements_sources_in_order(tmp_path: Path) -> None:
    pyproject = '[project]\nname = "x"\ndependencies = ["requests>=2", "rich"]\n'
    ctx = context.create(_source(tmp_path, {"train.py": "", "pyproject.toml": pyproject}), tmp_path / "w1")
    assert _read(ctx.archive, dockerfile.PYPROJECT_REQUIREMENTS) == "requests>=2\nrich\n"
    frozen = context.create(_source(tmp_path / "f", {"train.py": "", "requirements.frozen.txt": "a==1\n"}),
                            tmp_path / "w2")
    assert f"python /tmp/{dockerfile.INSTALLER} /tmp/requirements.frozen.txt" in frozen.dockerfile.text
    assert _read(frozen.archive, dockerfile.INSTALLER) == dockerfile.INSTALLER_SOURCE.read_text()
    bare = context.create(_source(tmp_path / "b", {"train.py": ""}), tmp_path / "w3")
    assert "pip install" not in bare.dockerfile.text
    empty = context.create(_source(tmp_path / "e", {"train.py": "", "requirements.txt": "# none\n\n"}),
                           tmp_path / "w4")
    assert "pip install" not in empty.dockerfile.text  # pip refuses an empty requirements file


def test_accelerator_base_image(tmp_path: Path) -> None:
    src = _source(tmp_path, {"train.py": ""}, accelerator_base_image="nvidia/cuda:12.4.1-runtime-ubuntu22.04")
    text, _ = dockerfile.generate(src)
    assert "FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04 AS run" in text and "python3.11" in text
    with pytest.raises(BuildError, match="not a valid image reference"):
        dockerfile.generate(_source(tmp_path, {"train.py": ""}, accelerator_base_image="x y\nRUN evil"))


def test_archive_is_reproducible_and_skips_git(tmp_path: Path) -> None:
    src = _source(tmp_path, {"train.py": "print(1)\n", ".git/config": "x", "pkg/mod.py": ""})
    (src.directory / "link").symlink_to("train.py")
    one = context.create(src, tmp_path / "a")
    two = context.create(src, tmp_path / "b")
    assert one.digest == two.digest and one.tag == two.tag
    members = _members(one.archive)
    assert not any(".git" in n for n in members)
    assert members["src/link"].issym() and members["src/link"].linkname == "train.py"
    assert all(m.mtime == 0 and m.uid == 0 for m in members.values())


def test_python_version_forms() -> None:
    assert [python_minor(v, "3.9") for v in ("3.11", "3.12.1", "Python 3.10.4", "python-3.8", "", "x")] == \
        ["3.11", "3.12", "3.10", "3.8", "3.9", "3.9"]


def test_frozen_installer_reports_failed_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from agent.build import install_frozen, status

    reqs = tmp_path / "r.txt"
    reqs.write_text("# comment\ngood==1\n\nbad==2\nwandb==0.30.0.dev1\n-e .\n")
    calls: list[tuple[str, ...]] = []

    def fake_pip(*args: str) -> bool:
        calls.append(args)
        return len(args) == 1 and args[0] != "bad==2"

    monkeypatch.setattr(install_frozen, "pip", fake_pip)
    assert install_frozen.main(["x", str(reqs)]) == 0
    assert calls[0] == ("good==1", "bad==2", "wandb")
    err = capsys.readouterr().err
    assert status.failed_packages("noise\n" + err) == ["bad==2"]


def test_build_source_from_a_resolved_job(tmp_path: Path) -> None:
    from agent.build.step import build_source
    from agent.jobspec import ArtifactRef, ResolvedJob

    code = tmp_path / "src"
    (code / ".job").mkdir(parents=True)
    (code / ".job" / "requirements.frozen.txt").write_text("numpy==2.0\n")
    job = ResolvedJob(name="e/p/trainer:latest", source_type="repo", entrypoint=("python", "train.py"),
                      runtime="3.10", dockerfile="docker/Dockerfile", build_context="app",
                      job=ArtifactRef(id="i", entity="e", project="p", collection="trainer", version=7, digest="d"))
    spec = {"overrides": {"entry_point": ["python", "other.py"], "dockerfile": "Dockerfile.gpu"},
            "builder": {"accelerator": {"base_image": "nvidia/cuda:12.4.1-base-ubuntu22.04"}}, "docker": {"user_id": 1234}}
    src = build_source(job, code, spec)
    assert src.source_string == "trainer:v7"  # what the official agent hashes into the tag
    assert (src.entrypoint, src.python_version, src.dockerfile, src.build_context, src.override_dockerfile) == \
        (("python", "other.py"), "3.10", "docker/Dockerfile", "app", "Dockerfile.gpu")
    assert (src.accelerator_base_image, src.user_id) == ("nvidia/cuda:12.4.1-base-ubuntu22.04", 1234)
    assert (code / "requirements.frozen.txt").read_text() == "numpy==2.0\n"
    assert build_source(job, code, {}).entrypoint == ("python", "train.py")
