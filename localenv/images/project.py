"""The images of this repository: the agent (``agent/Dockerfile``) and the trainer test image
(``tests/images/trainer``), built on the local Python base; and ``make image``.

``python -m localenv.images.project agent [--tool auto|docker|podman|buildah] [--tag REF]``
builds the agent image with whatever the machine has: Docker or Podman (from the public
``python:3.11-slim-bookworm``), or Debian's buildah here, where no registry can be reached
(base: the local mmdebstrap rootfs, output: an OCI archive in the cache, ready to push with
``buildah push`` / ``skopeo copy``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from localenv import images
from localenv.images.buildah import build_dockerfile
from localenv.images.oci import Archive

REPO = Path(__file__).resolve().parents[2]
AGENT_DOCKERFILE = REPO / "agent" / "Dockerfile"
AGENT_INPUTS = ("agent", "schemas", ".dockerignore")
TRAINER_DIR = REPO / "tests" / "images" / "trainer"
BASE_ARG = "PYTHON_IMAGE"


def chart_image() -> str:
    """The chart's default agent image reference (``agent.image`` + ``appVersion``)."""
    chart = REPO / "charts" / "launch-agent"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    app_version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    return f"{values['agent']['image']}:{app_version}"


def agent(log: images.Log = images._default_log) -> Archive:
    """The agent image from agent/Dockerfile on the local Python base (buildah)."""
    return build_dockerfile("launch-agent", AGENT_DOCKERFILE, REPO, AGENT_INPUTS,
                            bases={BASE_ARG: images.python_base(log=log)}, log=log)


def trainer(log: images.Log = images._default_log) -> Archive:
    """A training-script image with the ``wandb`` SDK: it calls ``wandb.init`` against the
    emulator, logs, and exits 0 or 1 (tests/images/trainer)."""
    return build_dockerfile("trainer", TRAINER_DIR / "Dockerfile", TRAINER_DIR, ["."],
                            bases={BASE_ARG: images.python_base(log=log)}, log=log)


def _works(cmd: list[str]) -> bool:
    if shutil.which(cmd[0]) is None:
        return False
    return subprocess.run(cmd, capture_output=True, check=False, timeout=60).returncode == 0


def pick_tool(requested: str) -> str:
    if requested != "auto":
        if shutil.which(requested) is None:
            raise images.ImageError(f"--tool {requested}: not found on PATH")
        return requested
    for tool, probe in (("docker", ["docker", "info"]), ("podman", ["podman", "info"])):
        if _works(probe):
            return tool
    if shutil.which("buildah"):
        return "buildah"
    raise images.ImageError("no image builder found: install Docker, Podman or buildah")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localenv.images.project", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", choices=("agent", "trainer"))
    parser.add_argument("--tool", choices=("auto", "docker", "podman", "buildah"), default="auto")
    parser.add_argument("--tag", default=None, help=f"image reference (default for the agent: {chart_image()})")
    args = parser.parse_args(argv)
    try:
        tool = pick_tool(args.tool)
        if tool in ("docker", "podman") and args.image == "agent":
            tag = args.tag or chart_image()
            cmd = [tool, "build", "-f", str(AGENT_DOCKERFILE), "-t", tag, str(REPO)]
            print("$ " + " ".join(cmd), flush=True)
            return subprocess.run(cmd, check=False).returncode
        archive = agent() if args.image == "agent" else trainer()
    except images.ImageError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 2
    tag = args.tag or (chart_image() if args.image == "agent" else archive.ref)
    print(f"built {archive.ref} ({archive.size / 1e6:.0f} MB compressed layers)\n"
          f"OCI archive: {archive.path}\n"
          f"push it: buildah push {archive.ref} docker://{tag}   "
          f"(or: skopeo copy oci-archive:{archive.path} docker://{tag})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
