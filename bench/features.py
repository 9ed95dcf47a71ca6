"""What structured output and embeddings cost, against peers measured in the same run.

Starts the release `greenthread serve` with the demo chat model and
all-MiniLM-L6-v2 (open mode, loopback), then measures:

- decode speed of the same prompt free, under `response_format: json_object`
  and under a `json_schema`, greedy, each repeated; the grammar's cost is the
  ratio of constrained to free tokens per second;
- embeddings: sentences per second for a batch of 64 and the latency of one
  sentence, next to the NumPy float32 reference (`e2e/embedding_reference.py`)
  computing the same vectors on the same machine.

Prints a markdown table. Run through bench/features.sh.
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
import embedding_reference  # noqa: E402

# Smoke mode (scripts/test.sh): once each, a few tokens, to show it still runs.
SMOKE = bool(os.environ.get("GREENTHREAD_BENCH_SMOKE"))
REPEATS = 1 if SMOKE else 5
MAX_TOKENS = 8 if SMOKE else 120
SENTENCES = [f"Sentence number {i} is about {topic}." for i, topic in enumerate(
    ["food", "the sea", "a girl carrying a baby", "mountains", "databases", "music", "rain", "trains"] * 8)]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
          "hobbies": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "age", "hobbies"]}


def post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_rate(base: str, model: str, extra: dict) -> tuple[float, int]:
    """Median completion tokens per second over REPEATS greedy answers, and the tokens of one."""
    rates, tokens = [], 0
    for _ in range(REPEATS):
        body = {"model": model, "temperature": 0, "max_tokens": MAX_TOKENS,
                "messages": [{"role": "user", "content": "Describe a person named Ada, her age and three hobbies."}], **extra}
        started = time.perf_counter()
        answer = post(base, "/v1/chat/completions", body)
        elapsed = time.perf_counter() - started
        tokens = answer["usage"]["completion_tokens"]
        rates.append(tokens / elapsed)
    return statistics.median(rates), tokens


def timed(f, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        f()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    binary, models = os.environ["GREENTHREAD_BIN"], Path(os.environ["GREENTHREAD_MODELS"])
    chat_file, embed_dir = models / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", models / "all-minilm-l6-v2"
    work = Path(tempfile.mkdtemp(prefix="gt-bench-"))
    (work / "config.yaml").write_text(
        f"models:\n  - name: chat\n    artifact: {chat_file}\n    min_replicas: 1\n"
        f"  - name: embed\n    artifact: {embed_dir}\n    min_replicas: 1\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([binary, "serve", "--open", "--config", str(work / "config.yaml"), "--data-dir",
                             str(work / "data"), "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        post(base, "/v1/chat/completions", {"model": "chat", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        free, free_tokens = decode_rate(base, "chat", {})
        obj, obj_tokens = decode_rate(base, "chat", {"response_format": {"type": "json_object"}})
        schema, schema_tokens = decode_rate(
            base, "chat", {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}})
        print("| chat answer (greedy, 120 tokens max) | tokens | tokens/s (median of 5) | vs free text |")
        print("|---|---|---|---|")
        print(f"| free text | {free_tokens} | {free:.1f} | 1.00 |")
        print(f"| `json_object` | {obj_tokens} | {obj:.1f} | {obj / free:.2f} |")
        print(f"| `json_schema` | {schema_tokens} | {schema:.1f} | {schema / free:.2f} |")
        print()

        post(base, "/v1/embeddings", {"model": "embed", "input": "warm up"})
        batch = timed(lambda: post(base, "/v1/embeddings", {"model": "embed", "input": SENTENCES}))
        one = timed(lambda: post(base, "/v1/embeddings", {"model": "embed", "input": SENTENCES[0]}), repeats=REPEATS if SMOKE else 20)
        ref_batch = timed(lambda: embedding_reference.embed(embed_dir, SENTENCES), repeats=REPEATS if SMOKE else 3)
        ref_one = timed(lambda: embedding_reference.embed(embed_dir, SENTENCES[:1]), repeats=REPEATS if SMOKE else 20)
        print("| embeddings (all-MiniLM-L6-v2) | GreenThread over HTTP | NumPy reference in process | ratio |")
        print("|---|---|---|---|")
        n = len(SENTENCES)
        print(f"| batch of {n} sentences | {n / batch:.0f} sentences/s | {n / ref_batch:.0f} sentences/s | {ref_batch / batch:.2f}× |")
        print(f"| one sentence, latency | {one * 1000:.1f} ms | {ref_one * 1000:.1f} ms | {ref_one / one:.2f}× |")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
