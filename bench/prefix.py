"""Prefix caching: chat requests that share a long system prompt and differ
in their question, on `greenthread serve` (builtin engine) and on llama.cpp's
`llama-server` (one slot, its prompt cache on), on the same GGUF with the
same threads, in one run.

Each engine answers, with one token so the time is the prefill: the first
request with the system prompt (nothing to reuse), then the same system
prompt with other questions (its head is cached). Reported: the first
request's time, the median of the later ones, and GreenThread's prefix cache
counters from /metrics.

Run through bench/prefix.sh. Prints a markdown table.
"""
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from engines import free_port, post
from load import start, stop

SMOKE = bool(os.environ.get("GREENTHREAD_BENCH_SMOKE"))
WORDS = 40 if SMOKE else 300
QUESTIONS = ["What is a lighthouse?", "Who keeps the lamp?", "Where is the harbor?", "When does the storm come?",
             "Why does the bell ring?", "How tall is the tower?"][: 3 if SMOKE else 6]
THREADS = os.environ.get("GREENTHREAD_BENCH_THREADS") or str(os.cpu_count() or 2)
FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
CONTEXT = 2048
VOCABULARY = ("the a lighthouse keeper storm ship night sea light rock island wave wind rain harbor boat sailor "
              "captain rope bell tower stair lamp oil glass window door letter winter summer").split()


def system_prompt(seed: int) -> str:
    rng = random.Random(seed)
    return "You are the lighthouse keeper's assistant. Notes: " + " ".join(rng.choice(VOCABULARY) for _ in range(WORDS))


def ask(base: str, system: str, question: str) -> tuple[float, int]:
    body = {"model": "demo", "max_tokens": 1, "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
    started = time.perf_counter()
    answer = post(base, "/v1/chat/completions", body)
    return time.perf_counter() - started, answer["usage"]["prompt_tokens"]


def session(base: str) -> dict:
    # A different system prompt first: the model is awake and warm, and shares nothing with the one timed.
    ask(base, system_prompt(1), "Hello")
    system = system_prompt(2)
    first, tokens = ask(base, system, QUESTIONS[0])
    later = [ask(base, system, q)[0] for q in QUESTIONS[1:]]
    return {"first": first, "later": statistics.median(later), "tokens": tokens}


def counters(base: str) -> dict:
    with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
        text = r.read().decode()
    found = {}
    for line in text.splitlines():
        for name in ("prefix_cache_queries_total", "prefix_cache_hits_total"):
            if line.startswith(f"greenthread_{name}{{"):
                found[name] = float(line.split()[-1])
    return found


def greenthread(binary: str, artifact: Path) -> dict:
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "config.yaml"
        config.write_text(f"models:\n  - name: demo\n    artifact: {artifact}\n    context_length: {CONTEXT}\n"
                          "    idle_timeout: 1h\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start([binary, "serve", "--open", "--config", str(config), "--data-dir", f"{work}/data",
                      "--listen", f"127.0.0.1:{port}", "--wake-timeout", "10m"], f"{base}/health")
        try:
            out = session(base)
            out["counters"] = counters(base)
            if out["counters"].get("prefix_cache_hits_total", 0) <= 0:
                sys.exit("greenthread reused no cached prompt head")
            return out
        finally:
            stop(proc)


def llama(server: str, artifact: Path) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start([server, "-m", str(artifact), "--host", "127.0.0.1", "--port", str(port), "--threads", THREADS,
                  "--parallel", "1", "-c", str(CONTEXT), "--alias", "demo"], f"{base}/health")
    try:
        return session(base)
    finally:
        stop(proc)


def main() -> None:
    artifact = Path(os.environ["GREENTHREAD_MODELS"]) / FILE
    ours = greenthread(os.environ["GREENTHREAD_BIN"], artifact)
    theirs = llama(os.environ["GREENTHREAD_LLAMA_SERVER"], artifact)
    ms = lambda s: f"{s * 1000:.0f}"
    print(f"{FILE}, {THREADS} engine threads on {os.cpu_count()} cores, a system prompt of {WORDS} words, "
          f"{len(QUESTIONS) - 1} later questions")
    print()
    print("| engine | prompt tokens | first request (ms) | later requests, median (ms) | first / later |")
    print("|---|---:|---:|---:|---:|")
    for name, r in (("greenthread", ours), ("llama-server", theirs)):
        print(f"| {name} | {r['tokens']} | {ms(r['first'])} | {ms(r['later'])} | {r['first'] / r['later']:.1f}x |")
    c = ours["counters"]
    print()
    print(f"greenthread prefix cache: {c.get('prefix_cache_hits_total', 0):.0f} of "
          f"{c.get('prefix_cache_queries_total', 0):.0f} prompt tokens reused")


if __name__ == "__main__":
    main()
