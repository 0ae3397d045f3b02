"""``python -m agent.build.fetch PATH``: download ``$LAUNCH_AGENT_CONTEXT_URL`` to PATH (the init
container of Azure builds without a storage key; the URL is a short-lived read-only SAS)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx2 as httpx


def main(argv: list[str]) -> int:
    url = os.environ.get("LAUNCH_AGENT_CONTEXT_URL", "")
    if len(argv) != 2 or not url:
        print("usage: LAUNCH_AGENT_CONTEXT_URL=... python -m agent.build.fetch PATH", file=sys.stderr)
        return 2
    target = Path(argv[1])
    partial = target.with_suffix(".partial")
    with httpx.Client(timeout=httpx.Timeout(60.0), verify=os.environ.get("SSL_CERT_FILE") or True) as http, \
            http.stream("GET", url) as resp:
        if resp.status_code != 200:
            print(f"fetching the build context failed: HTTP {resp.status_code}", file=sys.stderr)
            return 1
        with partial.open("wb") as out:
            for chunk in resp.iter_bytes():
                out.write(chunk)
    partial.replace(target)
    print(f"fetched the build context ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
