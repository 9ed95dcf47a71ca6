"""The demo model on GreenThread's builtin engine and on llama.cpp's
`llama-server` as an external engine, both through `greenthread serve`, and
`llama-server` called directly, in one run on one machine:

- wake: a sleeping model's first one-token answer (the builtin engine
  materializes its weights; the external engine's process is started and
  waited for), and the direct server's start to its first answer;
- decode tokens/s of one greedy answer, median of REPEATS;
- the proxy's added latency: one-token completions alternating between the
  external engine through GreenThread and the same server directly.

Run through bench/engines.sh. Prints a markdown table.
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

SMOKE = bool(os.environ.get("GREENTHREAD_BENCH_SMOKE"))
REPEATS = 1 if SMOKE else 5
MAX_TOKENS = 8 if SMOKE else 128
HOPS = 5 if SMOKE else 200
# The engines' threads: all cores by default; fewer leave room for the
# client and the proxy, whose work otherwise preempts the engine's.
THREADS = os.environ.get("GREENTHREAD_BENCH_THREADS") or str(os.cpu_count() or 2)
FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return json.load(r)


def wait_ok(url: str, proc: subprocess.Popen, timeout=300.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            sys.exit(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{url} never answered")


def one_token(base: str, model: str) -> float:
    started = time.perf_counter()
    post(base, "/v1/completions", {"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0})
    return time.perf_counter() - started


def decode_rate(base: str, model: str) -> float:
    rates = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        answer = post(base, "/v1/chat/completions", {"model": model, "messages": PROMPT, "max_tokens": MAX_TOKENS,
                                                     "temperature": 0})
        rates.append(answer["usage"]["completion_tokens"] / (time.perf_counter() - started))
    return statistics.median(rates)


def state(base: str, model: str) -> str:
    return next(m for m in get(base, "/status")["models"] if m["name"] == model)["state"]


def cold(base: str, model: str) -> float:
    """The first one-token answer once `model` has gone to sleep (idle timeout 1 s)."""
    deadline = time.monotonic() + 120
    while state(base, model) != "sleeping":
        if time.monotonic() > deadline:
            sys.exit(f"{model} never went to sleep")
        time.sleep(0.1)
    return one_token(base, model)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    models = Path(os.environ["GREENTHREAD_MODELS"])
    llama = os.environ["GREENTHREAD_LLAMA_SERVER"]
    binary = os.environ["GREENTHREAD_BIN"]
    artifact = models / FILE
    procs = []
    try:
        with tempfile.TemporaryDirectory() as work:
            direct_port = free_port()
            direct_base = f"http://127.0.0.1:{direct_port}"
            started = time.perf_counter()
            procs.append(subprocess.Popen([llama, "-m", str(artifact), "--host", "127.0.0.1", "--port", str(direct_port),
                                           "-c", "2048", "--threads", THREADS, "--alias", "direct"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_ok(f"{direct_base}/health", procs[-1])
            one_token(direct_base, "direct")
            direct_start = time.perf_counter() - started
            config = Path(work) / "config.yaml"
            engine = f'{{kind: llama-server, binary: {llama}, args: ["-c", "2048", "--threads", "{THREADS}"]}}'
            config.write_text(
                "models:\n"
                f"  - name: builtin\n    artifact: {artifact}\n    context_length: 2048\n    idle_timeout: 1s\n"
                f"  - name: external\n    artifact: {artifact}\n    idle_timeout: 1s\n    engine: {engine}\n"
            )
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            procs.append(subprocess.Popen([binary, "serve", "--open", "--config", str(config), "--data-dir",
                                           f"{work}/data", "--listen", f"127.0.0.1:{port}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_ok(f"{base}/health", procs[-1])
            rows = []
            for model in ("builtin", "external"):
                one_token(base, model)
                wake = statistics.median(cold(base, model) for _ in range(1 if SMOKE else 3))
                rows.append((model, wake, decode_rate(base, model)))
            rows.append(("direct", direct_start, decode_rate(direct_base, "direct")))
            one_token(base, "external")
            through, straight = [], []
            for _ in range(HOPS):
                through.append(one_token(base, "external"))
                straight.append(one_token(direct_base, "direct"))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    names = {"builtin": "through GreenThread, builtin engine", "external": "through GreenThread, llama-server engine",
             "direct": "llama-server directly (start to first answer)"}
    print(f"{THREADS} engine threads on {os.cpu_count()} cores")
    print()
    print(f"| path | wake / start to first token (s) | decode tokens/s ({MAX_TOKENS} tokens) |")
    print("|---|---:|---:|")
    for model, wake, rate in rows:
        print(f"| {names[model]} | {wake:.2f} | {rate:.1f} |")
    print()
    print(f"| one-token completion, {HOPS} each | p50 (ms) | p99 (ms) |")
    print("|---|---:|---:|")
    for label, values in (("llama-server directly", straight), ("through GreenThread", through)):
        print(f"| {label} | {percentile(values, 50) * 1000:.2f} | {percentile(values, 99) * 1000:.2f} |")
    added50 = (percentile(through, 50) - percentile(straight, 50)) * 1000
    added99 = (percentile(through, 99) - percentile(straight, 99)) * 1000
    print(f"| added by the proxy | {added50:.2f} | {added99:.2f} |")


if __name__ == "__main__":
    main()
