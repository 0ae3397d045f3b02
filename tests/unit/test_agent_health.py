"""agent.health + agent.metrics: the three endpoints over a real socket; log redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import httpx

from agent.__main__ import setup_logging
from agent.health import HealthServer
from agent.metrics import Metrics


def test_endpoints():
    async def scenario():
        m = Metrics()
        m.inc("items_popped_total", "popped", queue="q")
        m.inc("items_popped_total", "popped", queue="q")
        m.set("running", "running", 3, queue='we"ird')
        m.observe("backend_request_seconds", "latency", 0.25, operation="popFromRunQueue")
        ready = {"v": False}
        server = HealthServer(m, live=lambda: True, ready=lambda: ready["v"], host="127.0.0.1", port=0)
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient() as c:
            assert (await c.get(base + "/healthz")).status_code == 200
            assert (await c.get(base + "/readyz")).status_code == 503
            ready["v"] = True
            assert (await c.get(base + "/readyz")).status_code == 200
            metrics = (await c.get(base + "/metrics")).text
            assert (await c.get(base + "/nope")).status_code == 404
        await server.aclose()
        return metrics

    text = asyncio.run(scenario())
    assert 'launch_agent_items_popped_total{queue="q"} 2' in text
    assert '# TYPE launch_agent_running gauge' in text
    assert 'launch_agent_running{queue="we\\"ird"} 3' in text
    assert 'launch_agent_backend_request_seconds_count{operation="popFromRunQueue"} 1' in text


def test_json_logs_never_print_the_key():
    key = "local-" + "z" * 40
    log = setup_logging("json", 0, key)
    buf = io.StringIO()
    log.handlers[0].stream = buf
    log.info("calling with %s", key)
    log.warning("plain line")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == 2
    assert key not in buf.getvalue() and "***" in lines[0]["message"]
    assert lines[1]["level"] == "warning"
    logging.getLogger("launch-agent").handlers.clear()


def test_tracebacks_are_redacted_too():
    key = "local-" + "t" * 40
    for fmt in ("text", "json"):
        log = setup_logging(fmt, 0, key)
        buf = io.StringIO()
        log.handlers[0].stream = buf
        try:
            raise RuntimeError(f"request with {key} failed")
        except RuntimeError:
            log.exception("launch failed")
        assert "RuntimeError" in buf.getvalue() and key not in buf.getvalue(), fmt
    logging.getLogger("launch-agent").handlers.clear()


def test_heartbeats():
    import time

    from agent.health import Heartbeats

    hb = Heartbeats()
    hb.register("fast", 0.05)
    hb.register("slow", 60)
    assert hb.ok()
    time.sleep(0.1)
    assert hb.stalled() == ["fast"] and not hb.ok()
    hb.beat("fast")
    assert hb.ok()
    hb.unregister("fast")
    hb.beat("fast")  # unknown now: ignored
    assert hb.ok()
