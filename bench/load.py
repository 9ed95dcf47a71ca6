"""Concurrent load on each demo model: GreenThread's builtin engine under
`greenthread serve`, and llama.cpp's `llama-server` with continuous batching
and `--parallel N`, on the same GGUF with the same threads, in one run.

- Closed loop: N clients each stream chat completions back to back for a
  window. Reported per N: aggregate output tokens/s, time to first token
  p50/p99, inter-token latency p50/p99, and the ratio to llama.cpp.
- Open loop: requests arrive at a fixed rate (Poisson, fixed seed); the rate
  doubles until time to first token p99 passes 2 s. Reported: the highest
  rate held.

Prompts are texts of mixed lengths (8 to 400 words, as completions: the
base Gemma has no chat template, and both engines read the same text into
the same token ids) and answers of mixed lengths (16 to 128 tokens), drawn
from a fixed seed, so both engines get the same requests in the same order.
Run through bench/load.sh; GREENTHREAD_BENCH_MODELS picks models (qwen, gemma).
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from engines import free_port, wait_ok

SMOKE = bool(os.environ.get("GREENTHREAD_BENCH_SMOKE"))
WINDOW = 3.0 if SMOKE else float(os.environ.get("GREENTHREAD_BENCH_SECONDS") or 30)
CLIENTS = [1, 4] if SMOKE else [int(n) for n in (os.environ.get("GREENTHREAD_BENCH_CLIENTS") or "1,4,16,64").split(",")]
RATES = [0.5] if SMOKE else [0.25, 0.5, 1, 2, 4, 8]
OPEN_LOOP = SMOKE or os.environ.get("GREENTHREAD_BENCH_OPEN_LOOP", "1") != "0"
TTFT_LIMIT = 2.0
THREADS = os.environ.get("GREENTHREAD_BENCH_THREADS") or str(os.cpu_count() or 2)
MODELS = {"qwen": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "gemma": "gemma-3-270m-q4_k_m.gguf"}
# Each sequence may hold its prompt and answer: 400 words and 128 tokens fit in 1024.
CONTEXT = 1024
WORDS = ("the a lighthouse keeper storm ship night sea light rock island wave wind rain harbor boat sailor "
         "captain rope bell tower stair lamp oil glass window door letter winter summer morning evening").split()


def requests(seed: int):
    """An endless sequence of (prompt, max_tokens), the same for every engine."""
    rng = random.Random(seed)
    while True:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 400)))
        yield f"A story: {words}", rng.randint(16, 128)


def stream(base: str, model: str, prompt: str, max_tokens: int) -> tuple[float, list[float], int] | None:
    """One streamed completion: (time to first token, gaps between tokens, tokens), or None on an error."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    started = time.perf_counter()
    stamps, tokens = [], 0
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            for line in r:
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                if any(c.get("text") for c in chunk.get("choices") or []):
                    stamps.append(time.perf_counter())
    except OSError:
        return None
    if not stamps:
        return None
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return stamps[0] - started, gaps, tokens or len(stamps)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.ttft, self.gaps, self.tokens, self.failed = [], [], 0, 0

    def add(self, result):
        with self.lock:
            if result is None:
                self.failed += 1
                return
            ttft, gaps, tokens = result
            self.ttft.append(ttft)
            self.gaps.extend(gaps)
            self.tokens += tokens


def closed_loop(base: str, model: str, clients: int) -> dict:
    results, deadline = Results(), time.perf_counter() + WINDOW
    source, source_lock = requests(clients), threading.Lock()

    def client():
        while time.perf_counter() < deadline:
            with source_lock:
                prompt, max_tokens = next(source)
            results.add(stream(base, model, prompt, max_tokens))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"tokens/s": results.tokens / elapsed, "ttft50": percentile(results.ttft, 50),
            "ttft99": percentile(results.ttft, 99), "itl50": percentile(results.gaps, 50),
            "itl99": percentile(results.gaps, 99), "requests": len(results.ttft), "failed": results.failed}


def open_loop(base: str, model: str) -> tuple[float, list[tuple[float, float, int]]]:
    """The highest rate whose TTFT p99 stays under the limit, and each rate tried: (rate, p99, failed)."""
    held, tried = 0.0, []
    for rate in RATES:
        rng, source = random.Random(int(rate * 1000)), requests(int(rate * 1000))
        results, threads = Results(), []
        started = time.perf_counter()
        at = started
        while at - started < WINDOW:
            at += rng.expovariate(rate)
            time.sleep(max(0.0, at - time.perf_counter()))
            prompt, max_tokens = next(source)
            t = threading.Thread(target=lambda m=prompt, n=max_tokens: results.add(stream(base, model, m, n)))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        p99 = percentile(results.ttft, 99)
        tried.append((rate, p99, results.failed))
        if results.failed or not p99 < TTFT_LIMIT:
            break
        held = rate
    return held, tried


def start(argv: list[str], health: str) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ok(health, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def warm(base: str, model: str) -> None:
    if stream(base, model, "Hello", 4) is None:
        sys.exit(f"{base}: {model} does not answer")


def measure_greenthread(binary: str, artifact: Path, work: str) -> dict:
    top = max(CLIENTS)
    config = Path(work) / "config.yaml"
    config.write_text(f"models:\n  - name: demo\n    artifact: {artifact}\n    context_length: {CONTEXT}\n"
                      f"    max_concurrency: {top}\n    max_queue: {top * 8}\n    idle_timeout: 1h\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start([binary, "serve", "--open", "--config", str(config), "--data-dir", f"{work}/data",
                  "--listen", f"127.0.0.1:{port}", "--wake-timeout", "10m"], f"{base}/health")
    try:
        warm(base, "demo")
        out = {n: closed_loop(base, "demo", n) for n in CLIENTS}
        if OPEN_LOOP:
            out["open"] = open_loop(base, "demo")
    finally:
        stop(proc)
    return out


def measure_llama(server: str, artifact: Path) -> dict:
    out = {}
    for n in CLIENTS + (["open"] if OPEN_LOOP else []):
        parallel = max(CLIENTS) if n == "open" else n
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start([server, "-m", str(artifact), "--host", "127.0.0.1", "--port", str(port), "--threads", THREADS,
                      "--parallel", str(parallel), "-c", str(CONTEXT * parallel), "--cont-batching",
                      "--alias", "demo"], f"{base}/health")
        try:
            warm(base, "demo")
            out[n] = open_loop(base, "demo") if n == "open" else closed_loop(base, "demo", n)
        finally:
            stop(proc)
    return out


def main() -> None:
    chosen = (os.environ.get("GREENTHREAD_BENCH_MODELS") or ",".join(MODELS)).split(",")
    for name in chosen:
        report(MODELS[name.strip()])
        print()


def report(file: str) -> None:
    artifact = Path(os.environ["GREENTHREAD_MODELS"]) / file
    with tempfile.TemporaryDirectory() as work:
        ours = measure_greenthread(os.environ["GREENTHREAD_BIN"], artifact, work)
    theirs = measure_llama(os.environ["GREENTHREAD_LLAMA_SERVER"], artifact)
    ms = lambda s: f"{s * 1000:.0f}"
    print(f"{file}, {THREADS} engine threads on {os.cpu_count()} cores, {WINDOW:.0f} s per point, "
          f"context {CONTEXT} per sequence")
    print()
    print("| N streams | engine | output tokens/s | TTFT p50 / p99 (ms) | ITL p50 / p99 (ms) | requests (failed) "
          "| tokens/s vs llama.cpp |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in CLIENTS:
        for name, r in (("greenthread", ours[n]), ("llama-server", theirs[n])):
            ratio = f"{ours[n]['tokens/s'] / theirs[n]['tokens/s']:.2f}x" if name == "greenthread" else ""
            print(f"| {n} | {name} | {r['tokens/s']:.1f} | {ms(r['ttft50'])} / {ms(r['ttft99'])} "
                  f"| {ms(r['itl50'])} / {ms(r['itl99'])} | {r['requests']} ({r['failed']}) | {ratio} |")
    if not OPEN_LOOP:
        return
    print()
    print(f"| open loop (Poisson) | highest rate held, TTFT p99 < {TTFT_LIMIT:.0f} s (req/s) | rates tried: p99 (s) |")
    print("|---|---:|---|")
    for name, (held, tried) in (("greenthread", ours["open"]), ("llama-server", theirs["open"])):
        steps = ", ".join(f"{rate:g}/s: {p99:.2f}" + (f" ({failed} failed)" if failed else "") for rate, p99, failed in tried)
        print(f"| {name} | {held:g} | {steps} |")


if __name__ == "__main__":
    main()
