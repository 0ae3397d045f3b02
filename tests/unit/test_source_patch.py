"""A git job's diff.patch applied on its commit (agent.source.patch): for changes made in a real
git repository and diffed by the real `git diff`, applying the patch to the committed tree gives
exactly the changed working tree (content, files, executable bits); a patch that does not fit, a
binary change or a path outside the tree is one clear PatchError."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.source.patch import PatchError, apply_patch

GIT = shutil.which("git") or "git"
BASE = {
    "train.py": "".join(f"line {i}\n" for i in range(1, 41)),
    "keep.txt": "unchanged\n",
    "gone.txt": "to be deleted\n",
    "old name.py": "print('moved')\n" * 20,
    "run.sh": "echo hi\n",
    "noeol.txt": "a\nb\nlast without newline",
    "crlf.txt": "one\r\ntwo\r\nthree\r\n",
    "pkg/mod.py": "X = 1\n",
}


def git(cwd: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run([GIT, *args], cwd=cwd, env=env, check=True, capture_output=True).stdout.decode()


def tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    return {str(p.relative_to(root)): (p.read_bytes(), os.access(p, os.X_OK)) for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def committed_repo(tmp_path: Path) -> tuple[Path, Path]:
    work = tmp_path / "work"
    for rel, text in BASE.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(text.encode())
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "base")
    checkout = tmp_path / "checkout"
    shutil.copytree(work, checkout, ignore=shutil.ignore_patterns(".git"))
    return work, checkout


def diff(work: Path) -> bytes:
    git(work, "add", "-A")
    return git(work, "-c", "diff.renames=true", "diff", "HEAD").encode()


def test_the_patch_of_real_changes_gives_the_changed_tree(tmp_path):
    work, checkout = committed_repo(tmp_path)
    lines = BASE["train.py"].splitlines(keepends=True)
    lines[0] = "first changed\n"
    lines[19:21] = ["middle a\n", "middle b\n", "middle c\n"]
    lines[-1] = "last changed\n"
    (work / "train.py").write_text("".join(lines))
    (work / "gone.txt").unlink()
    (work / "new dir").mkdir()
    (work / "new dir" / "fresh é.py").write_text("print('new')\n")
    (work / "old name.py").rename(work / "pkg" / "new name.py")
    (work / "pkg" / "new name.py").write_text(BASE["old name.py"].replace("moved", "moved", 19) + "extra\n")
    (work / "run.sh").chmod(0o755)
    (work / "noeol.txt").write_text("a\nb changed\nlast without newline, still")
    (work / "crlf.txt").write_bytes(b"one\r\nTWO\r\nthree\r\n")
    (work / "pkg" / "mod.py").write_text("X = 2\n")
    patch = diff(work)
    assert b"rename from" in patch and b"new mode 100755" in patch and b"\\ No newline at end of file" in patch
    changed = apply_patch(checkout, patch)
    assert changed == 8
    assert tree(checkout) == tree(work)


def test_a_hunk_is_found_where_the_lines_moved(tmp_path):
    work, checkout = committed_repo(tmp_path)
    (work / "train.py").write_text(BASE["train.py"].replace("line 30\n", "line thirty\n"))
    patch = diff(work)
    shifted = "".join(f"header {i}\n" for i in range(5)) + BASE["train.py"]
    (checkout / "train.py").write_text(shifted)
    apply_patch(checkout, patch)
    assert (checkout / "train.py").read_text() == shifted.replace("line 30\n", "line thirty\n")


def test_a_patch_for_another_commit_is_refused(tmp_path):
    work, checkout = committed_repo(tmp_path)
    (work / "train.py").write_text(BASE["train.py"].replace("line 7\n", "line seven\n"))
    patch = diff(work)
    (checkout / "train.py").write_text(BASE["train.py"].replace("line 7\n", "something else\n"))
    with pytest.raises(PatchError, match=r"does not apply to train.py"):
        apply_patch(checkout, patch)


def test_binary_changes_and_paths_outside_the_tree_are_refused(tmp_path):
    work, checkout = committed_repo(tmp_path)
    (work / "weights.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(PatchError, match=r"binary file weights\.bin"):
        apply_patch(checkout, diff(work))
    evil = b"--- /dev/null\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+x\n"
    with pytest.raises(PatchError, match="outside the code"):
        apply_patch(checkout, evil)
    assert not (tmp_path / "outside.txt").exists()
