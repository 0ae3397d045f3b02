"""``python -m localenv.relay --owner DIR LISTEN=TARGET ...``: forward TCP connections.

Pods on the real node reach host-side services (the API server, the W&B emulator, servers
tests start) through the bridge's gateway address, while those services listen on loopback
only. Each ``LISTEN=TARGET`` pair (``host:port=host:port``) accepts on LISTEN and copies bytes
both ways to TARGET, one connection at a time per client. ``--owner`` names the state
directory the relay belongs to (so ``down`` knows it is its own). It prints ``ready`` once
every listener is bound and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

BUFFER = 256 * 1024


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected host:port")
    return host, int(port)


def _pair(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    listen, sep, target = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LISTEN=TARGET")
    return _addr(listen), _addr(target)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _handle(target: tuple[str, int], client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        upstream_r, upstream_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
    finally:
        for w in (client_w, upstream_w):
            with contextlib.suppress(OSError, RuntimeError):
                w.close()


async def serve(pairs: list[tuple[tuple[str, int], tuple[str, int]]]) -> None:
    servers = []
    for listen, target in pairs:
        servers.append(await asyncio.start_server(
            lambda r, w, t=target: _handle(t, r, w), listen[0], listen[1], reuse_address=True))
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localenv.relay", description=__doc__)
    parser.add_argument("--owner", required=True, help="state directory this relay belongs to")
    parser.add_argument("pairs", nargs="+", type=_pair, metavar="LISTEN=TARGET")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.pairs))
    except OSError as exc:
        print(f"relay: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
