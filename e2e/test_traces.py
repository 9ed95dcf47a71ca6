"""Traces over OTLP: `greenthread serve --otlp-endpoint` exports a span per
request, with its id, route, model and status, and child spans for its
admission, its wait for the model, its generation and the generation's
prefill and decode, to a real OTLP/HTTP
receiver on loopback. Spans still buffered are sent when the server stops."""
import os
import signal
import subprocess
from pathlib import Path

import openai

from conftest import DEMO_FILE, DEMO_MODEL, OUT, free_port, wait_healthy
from otlp_collector import Collector


def test_a_request_becomes_a_trace_of_its_stages_at_the_collector(tmp_path):
    collector = Collector()
    config = tmp_path / "config.yaml"
    config.write_text(f"models:\n  - name: {DEMO_MODEL}\n    artifact: {Path(os.environ['GREENTHREAD_MODELS']) / DEMO_FILE}\n"
                      "    context_length: 2048\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    OUT.mkdir(exist_ok=True)
    log = OUT / "traces.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [os.environ["GREENTHREAD_BIN"], "serve", "--open", "--config", str(config), "--data-dir",
             str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}", "--otlp-endpoint", collector.endpoint],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(base, proc, log)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
        for stream in (False, True):
            reply = client.chat.completions.create(
                model=DEMO_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=stream,
                extra_headers={"x-request-id": f"trace-me-{stream}"})
            if stream:
                list(reply)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        collector.stop()

    spans = collector.spans
    for stream in (False, True):
        [request] = [s for s in spans if s["name"] == "request" and s["attributes"].get("request_id") == f"trace-me-{stream}"]
        assert request["service"] == "greenthread"
        attributes = request["attributes"]
        assert attributes["route"] == "/v1/chat/completions" and attributes["method"] == "POST"
        assert attributes["status"] == 200 and attributes["model"] == DEMO_MODEL and attributes["outcome"] == "ok"
        children = {s["name"]: s for s in spans if s["trace_id"] == request["trace_id"] and s["span_id"] != request["span_id"]}
        assert {"admission", "lease", "generate", "prefill", "decode"} <= set(children), sorted(children)
        # Token counts are integer attributes (a backend sums and charts them), not strings.
        prompt_tokens = children["prefill"]["attributes"]["prompt_tokens"]
        generated_tokens = children["decode"]["attributes"]["generated_tokens"]
        assert isinstance(prompt_tokens, int) and prompt_tokens > 0, repr(prompt_tokens)
        assert isinstance(generated_tokens, int) and 0 < generated_tokens <= 4, repr(generated_tokens)
        assert children["lease"]["attributes"]["model"] == DEMO_MODEL
        assert all(c["parent_id"] for c in children.values()), "every stage hangs off the request"
