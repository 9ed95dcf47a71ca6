"""A graceful drain of the real binary: SIGTERM while a stream is in flight
turns readiness off, refuses new connections, lets the stream run to its
end, records its usage, and exits 0. The access log (JSON lines) has one
line per request, written when its answer has gone out."""
import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import openai

from conftest import DEMO_FILE, DEMO_MODEL, OUT, free_port, wait_healthy


def test_sigterm_lets_a_stream_in_flight_finish_and_records_it(tmp_path):
    models = Path(os.environ["GREENTHREAD_MODELS"])
    config = tmp_path / "config.yaml"
    config.write_text(f"models:\n  - name: {DEMO_MODEL}\n    artifact: {models / DEMO_FILE}\n    context_length: 2048\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    OUT.mkdir(exist_ok=True)
    log = OUT / "drain.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [os.environ["GREENTHREAD_BIN"], "serve", "--open", "--config", str(config), "--data-dir",
             str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}", "--drain-timeout", "60s",
             "--log-format", "json"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(base, proc, log)
        with urllib.request.urlopen(f"{base}/ready", timeout=5) as ready:
            assert json.load(ready) == {"status": "ready"}
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
        stream = client.chat.completions.create(
            extra_headers={"x-request-id": "drain-test-1"},
            model=DEMO_MODEL, messages=[{"role": "user", "content": "Write a long story about a lighthouse."}],
            max_tokens=120, temperature=0, stream=True, stream_options={"include_usage": True},
        )
        chunks = [next(stream)]
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            raise AssertionError("a new connection was taken while draining")
        except OSError:
            pass
        chunks += list(stream)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes in (["length"], ["stop"]), finishes
        assert chunks[-1].usage.completion_tokens > 10
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Drained" in log.read_text()
    # The stream's usage was written before the process exited.
    db = sqlite3.connect(tmp_path / "data" / "greenthread.db")
    rows = db.execute(
        "SELECT status, output_tokens, request_id FROM usage_records WHERE model = ?", (DEMO_MODEL,)).fetchall()
    assert rows == [("ok", chunks[-1].usage.completion_tokens, "drain-test-1")], rows

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [line["fields"] for line in lines if line.get("target") == "greenthread::access"]
    [streamed] = [a for a in access if a.get("request_id") == "drain-test-1"]
    assert streamed["route"] == "/v1/chat/completions" and streamed["method"] == "POST" and streamed["status"] == 200
    assert streamed["model"] == DEMO_MODEL and streamed["outcome"] == "ok"
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (
        chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens)
    assert float(streamed["latency_ms"]) > 0 and "wake_ms" in streamed
    assert any(a["route"] == "/ready" and a["status"] == 200 for a in access)
    # No per-exchange noise besides it.
    assert not [line for line in lines if line.get("target", "").startswith("tower_http")]
