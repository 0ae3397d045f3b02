"""``python -m agent fetch-source``: what the init container of a code or git job runs.

    python -m agent fetch-source --dest /mnt/wandb --max-bytes N
        (--artifact entity/project/name:vN --artifact-id ID | --git-remote URL --git-commit SHA)
        [--job entity/project/name:vN --job-id ID]

Reads WANDB_BASE_URL and WANDB_API_KEY (for artifacts), git credentials from
LAUNCH_AGENT_GIT_CREDENTIALS (the contents of a git-credentials file) or ~/.git-credentials, and
a CA bundle from GIT_SSL_CAINFO for git and SSL_CERT_FILE for W&B. Exit 0 when the source is
in place, 1 with one line on stderr when it cannot be fetched, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from agent.backend.jobs.files import DirectUrls
from agent.backend.transport import GraphQLClient
from agent.jobspec import GitSource
from agent.source.git import read_credentials
from agent.source.materialize import SourceError, materialize, parse_artifact_ref

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent fetch-source", description="Fetch a job's source code")
    p.add_argument("--dest", required=True, type=Path, help="directory to write the source into")
    p.add_argument("--max-bytes", type=int, default=1 << 30, help="refuse sources larger than this")
    p.add_argument("--artifact", help="code artifact, entity/project/name:v<N>")
    p.add_argument("--artifact-id", help="the code artifact's id")
    p.add_argument("--git-remote", help="https git remote")
    p.add_argument("--git-commit", help="full commit id")
    p.add_argument("--job", help="job artifact (its files go to <dest>/.job), entity/project/name:v<N>")
    p.add_argument("--job-id", help="the job artifact's id")
    return p


def _credentials() -> list:  # type: ignore[type-arg]
    text = os.environ.get("LAUNCH_AGENT_GIT_CREDENTIALS")
    if text is None:
        path = Path(os.environ.get("HOME") or "/") / ".git-credentials"
        text = path.read_text() if path.is_file() else ""
    return read_credentials(text)


async def _run(args: argparse.Namespace) -> int:
    code = parse_artifact_ref(args.artifact, args.artifact_id or "") if args.artifact else None
    git = GitSource(args.git_remote, args.git_commit) if args.git_remote else None
    job = parse_artifact_ref(args.job, args.job_id or "") if args.job else None
    needs_wandb = code is not None or job is not None
    key = os.environ.get("WANDB_API_KEY", "")
    if needs_wandb and not key:
        print("fetch-source: WANDB_API_KEY is not set (the pod reads it from its Secret)", file=sys.stderr)
        return EXIT_BAD_INPUT
    client = GraphQLClient(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai", key or "-", timeout=60)
    downloads = DirectUrls(timeout=300)
    try:
        written = await materialize(args.dest, client=client, downloads=downloads, code=code, git=git, job=job,
                                    max_bytes=args.max_bytes, credentials=_credentials(),
                                    verify=os.environ.get("GIT_SSL_CAINFO") or True)
    finally:
        await client.aclose()
        await downloads.aclose()
    what = code.qualified_name if code else f"{git.remote}@{git.commit[:12]}" if git else ""
    print(f"fetch-source: {what}: {written} bytes in {args.dest}")
    return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if bool(args.artifact) == bool(args.git_remote) or (args.git_remote and not args.git_commit):
        print("fetch-source: give --artifact (with --artifact-id) or --git-remote with --git-commit",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.max_bytes < 1:
        print("fetch-source: --max-bytes must be a positive number of bytes", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return asyncio.run(_run(args))
    except SourceError as exc:
        print(f"fetch-source: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # the pod's log is where a person looks: one line, no traceback
        print(f"fetch-source: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
