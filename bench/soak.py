"""A soak: `greenthread serve` holding about three times more models than its
device budget, driven for MINUTES by clients in a Zipf mix over the models
(a few hot, many cold) that stream, hang up mid-stream, call tools, embed,
and send bad requests.

Models: tiny Llama models generated here (random weights, Qwen2.5's real
tokenizer and chat template), plus the real demo models, some under two names (each name is a
model of its own: its own wakes, sleeps and preemptions).

Reported: requests by outcome — and the lost ones, which must be none: a
request is lost when it gets no answer, a 5xx other than a 503 with
Retry-After, a stream that ends without `[DONE]`, or a bad request that is
not refused with a 4xx in the API's error shape; wakes and preemptions (from
`/metrics`); time to first token p50/p99 per period; the server's resident
memory, open file descriptors and threads at the start (every model woken
once, then all asleep) and at the end (the same, after the load). Exits 1
on a lost request, or on resources not back within the stated tolerance
(in smoke mode it reports the same and exits 0).

    bench/soak.sh MINUTES      (GREENTHREAD_BENCH_SMOKE=1: 20 seconds, fewer models)
"""
import contextlib
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

from engines import free_port, wait_ok

SMOKE = bool(os.environ.get("GREENTHREAD_BENCH_SMOKE"))
MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
DURATION = 20.0 if SMOKE else MINUTES * 60
PERIOD = 5.0 if SMOKE else 60.0
CLIENTS = 3 if SMOKE else 6
GENERATED = 2 if SMOKE else 8
DEVICE_BUDGET_MIB = 400 if SMOKE else 600
IDLE_TIMEOUT = "4s" if SMOKE else "15s"
# Back to baseline: resident memory within 10% + 64 MiB, descriptors within 16, threads within 8.
RSS_TOLERANCE = (0.10, 64 << 20)
FD_TOLERANCE = 16
THREAD_TOLERANCE = 8

QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GEMMA = "gemma-3-270m-q4_k_m.gguf"
EMBEDDER = "all-minilm-l6-v2"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


def generated_model(path: Path, tokenizer_from: Path, seed: int) -> None:
    """A tiny Llama model: two layers of width 64, random weights, the
    tokenizer and chat template of `tokenizer_from` (a real GGUF: Qwen's,
    whose template offers tools)."""
    source = GGUFReader(tokenizer_from)
    writer = GGUFWriter(path, "llama")
    writer.add_name(f"soak-{seed}")
    hidden, heads, kv_heads, ffn, layers = 64, 4, 2, 128, 2
    writer.add_context_length(2048)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    vocab = 0
    for field in source.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            values = [field.contents(i) for i in range(len(field.data))]
            writer.add_array(field.name, values)
            if field.name == "tokenizer.ggml.tokens":
                vocab = len(values)
        elif kind == GGUFValueType.STRING:
            writer.add_string(field.name, field.contents())
        else:
            writer.add_key_value(field.name, field.contents(), kind)
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads

    def tensor(name, *shape):
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    tensor("token_embd.weight", vocab, hidden)
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    for b in range(layers):
        writer.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        tensor(f"blk.{b}.attn_q.weight", heads * head_dim, hidden)
        tensor(f"blk.{b}.attn_k.weight", kv_heads * head_dim, hidden)
        tensor(f"blk.{b}.attn_v.weight", kv_heads * head_dim, hidden)
        tensor(f"blk.{b}.attn_output.weight", hidden, heads * head_dim)
        tensor(f"blk.{b}.ffn_gate.weight", ffn, hidden)
        tensor(f"blk.{b}.ffn_up.weight", ffn, hidden)
        tensor(f"blk.{b}.ffn_down.weight", hidden, ffn)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def models(models_dir: Path, work: Path) -> dict[str, tuple[Path, str]]:
    """name -> (artifact, kind), the hottest first (Zipf rank = position)."""
    out = {}
    for i in range(GENERATED):
        path = work / f"soak-{i}.gguf"
        generated_model(path, models_dir / QWEN, seed=i)
        out[f"tiny-{i}"] = (path, "chat")
    out["gemma"] = (models_dir / GEMMA, "completion")
    out["embed"] = (models_dir / EMBEDDER, "embedding")
    if not SMOKE:
        out["qwen"] = (models_dir / QWEN, "chat")
        out["qwen-b"] = (models_dir / QWEN, "chat")
        out["gemma-b"] = (models_dir / GEMMA, "completion")
    # Interleave the real models among the generated ones, so hot and cold both hold each kind.
    names = list(out)
    order = [n for pair in zip(names[GENERATED:], names[:GENERATED]) for n in pair]
    order += [n for n in names if n not in order]
    return {n: out[n] for n in order}


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes = Counter()
        self.lost = []
        self.ttft = defaultdict(list)  # period -> seconds

    def add(self, outcome: str, lost: str | None = None, ttft: float | None = None, at: float = 0.0):
        with self.lock:
            self.outcomes[outcome] += 1
            if lost:
                self.lost.append(lost)
            if ttft is not None:
                self.ttft[int(at // PERIOD)].append(ttft)


def request(port: int, path: str, body: bytes, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", path, body=body, headers={"content-type": "application/json", **(headers or {})})
    return conn, conn.getresponse()


def proper_refusal(status: int, headers, body: bytes) -> bool:
    """A refusal in OpenAI's error shape; a 503 must say when to retry."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if not isinstance(error.get("message"), str):
        return False
    return status < 500 or (status == 503 and headers.get("retry-after") is not None)


def not_ok(tally, model, r) -> None:
    """Tallies an answer other than 200: a proper refusal, or lost."""
    data = r.read()
    if proper_refusal(r.status, r.headers, data):
        return tally.add(f"refused {r.status}")
    tally.add("lost", f"{model}: {r.status} {data[:200]!r}")


def streamed(tally, model, r, sent, started, hang_up=False) -> None:
    """Reads an SSE answer: its time to first chunk, and whether it ended with `[DONE]`."""
    first, done = None, False
    try:
        for line in r:
            if line.startswith(b"data: [DONE]"):
                done = True
                break
            if line.startswith(b"data: {") and first is None:
                first = time.perf_counter() - sent
                if hang_up:
                    break
    except OSError as e:
        return tally.add("lost", f"{model}: stream broke ({e})")
    if hang_up:
        return tally.add("hung up mid-stream", ttft=first, at=sent - started)
    if not done:
        return tally.add("lost", f"{model}: the stream ended without [DONE]")
    tally.add("streamed", ttft=first, at=sent - started)


def chat(port, tally, model, started, rng, stream, hang_up=False, tools=False):
    body = {"model": model, "max_tokens": rng.randint(4, 24), "stream": stream,
            "messages": [{"role": "user", "content": rng.choice(["Name a colour.", "Say hello.", "What is 2+2?",
                                                                  "Weather in Paris?"])}]}
    if tools:
        # Room for the whole call: a call cut short by max_tokens is no call.
        body["tools"], body["tool_choice"], body["max_tokens"] = TOOLS, "required", 96
    sent = time.perf_counter()
    try:
        conn, r = request(port, "/v1/chat/completions", json.dumps(body).encode())
    except OSError as e:
        return tally.add("lost", f"{model}: no answer ({e})")
    with contextlib.closing(conn):
        if r.status != 200:
            return not_ok(tally, model, r)
        if not stream:
            answer = json.loads(r.read())
            choice = answer["choices"][0]
            if tools and not choice["message"].get("tool_calls") and choice.get("finish_reason") != "length":
                return tally.add("lost", f"{model}: tool_choice required, but no call: {choice}")
            return tally.add("tool call" if tools else "answered")
        streamed(tally, model, r, sent, started, hang_up)


def embed(port, tally, model, rng):
    body = {"model": model, "input": [rng.choice(["a lighthouse", "the sea", "a storm at night"])] * rng.randint(1, 4)}
    try:
        conn, r = request(port, "/v1/embeddings", json.dumps(body).encode())
    except OSError as e:
        return tally.add("lost", f"{model}: no answer ({e})")
    with contextlib.closing(conn):
        data = r.read()
        if r.status == 200 and len(json.loads(data)["data"]) == len(body["input"]):
            return tally.add("embedded")
        if r.status != 200 and proper_refusal(r.status, r.headers, data):
            return tally.add(f"refused {r.status}")
        tally.add("lost", f"{model}: embeddings {r.status} {data[:200]!r}")


BAD = [
    (b'{"model": "tiny-0", "messages": [', "malformed JSON"),
    (json.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}).encode(), "unknown model"),
    (json.dumps({"model": "tiny-0", "messages": [{"role": "wizard", "content": "hi"}]}).encode(), "unknown role"),
    (json.dumps({"model": "tiny-0", "max_tokens": -3, "messages": [{"role": "user", "content": "hi"}]}).encode(), "negative max_tokens"),
    (json.dumps({"model": "tiny-0", "n": 500, "messages": [{"role": "user", "content": "hi"}]}).encode(), "too many choices"),
    (json.dumps({"model": "tiny-0", "messages": [{"role": "user", "content": "hi"}],
                 "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wat"}}}}).encode(), "bad schema"),
]


def bad(port, tally, rng):
    body, what = rng.choice(BAD)
    try:
        conn, r = request(port, "/v1/chat/completions", body)
    except OSError as e:
        return tally.add("lost", f"bad request ({what}): no answer ({e})")
    with contextlib.closing(conn):
        data = r.read()
        if 400 <= r.status < 500 and proper_refusal(r.status, r.headers, data):
            return tally.add("bad request refused")
        tally.add("lost", f"bad request ({what}) got {r.status} {data[:200]!r}")


def client(port, tally, catalog, weights, started, deadline, seed):
    rng = random.Random(seed)
    names = list(catalog)
    while time.perf_counter() < deadline:
        if rng.random() < 0.12:
            bad(port, tally, rng)
            continue
        model = rng.choices(names, weights)[0]
        kind = catalog[model][1]
        if kind == "embedding":
            embed(port, tally, model, rng)
            continue
        if kind == "completion":
            # A base model without a chat template: a streamed completion.
            completion(port, tally, model, started, rng)
            continue
        roll = rng.random()
        if roll < 0.5:
            chat(port, tally, model, started, rng, stream=True)
        elif roll < 0.65:
            chat(port, tally, model, started, rng, stream=True, hang_up=True)
        elif roll < 0.85:
            chat(port, tally, model, started, rng, stream=False)
        else:
            chat(port, tally, model, started, rng, stream=False, tools=True)


def completion(port, tally, model, started, rng):
    body = {"model": model, "prompt": "Once upon a time", "max_tokens": rng.randint(4, 24), "stream": True}
    sent = time.perf_counter()
    try:
        conn, r = request(port, "/v1/completions", json.dumps(body).encode())
    except OSError as e:
        return tally.add("lost", f"{model}: no answer ({e})")
    with contextlib.closing(conn):
        if r.status != 200:
            return not_ok(tally, model, r)
        streamed(tally, model, r, sent, started)


def resources(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1))
    return {"rss": field("VmRSS") * 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": field("Threads")}


def metrics(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    total = lambda pattern: sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))
    return {"wakes": total(r"^greenthread_model_wakes_total\{[^}]*\} (\S+)"),
            "preemptions": total(r'^greenthread_model_sleeps_total\{[^}]*cause="preempted"[^}]*\} (\S+)'),
            "awake": total(r'^greenthread_model_state\{[^}]*state="(?:serving|waking|draining)"[^}]*\} (\S+)')}


def settle(port: int, pid: int, timeout: float) -> dict:
    """Waits until no model is awake (each slept after its idle timeout)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and metrics(port)["awake"] > 0:
        time.sleep(1)
    time.sleep(2)
    return resources(pid)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def main() -> int:
    binary, models_dir = os.environ["GREENTHREAD_BIN"], Path(os.environ["GREENTHREAD_MODELS"])
    work = Path(tempfile.mkdtemp(prefix="gt-soak-"))
    catalog = models(models_dir, work)
    config = "models:\n" + "".join(
        f"  - name: {name}\n    artifact: {path}\n    idle_timeout: {IDLE_TIMEOUT}\n    context_length: 1024\n"
        for name, (path, _) in catalog.items())
    (work / "config.yaml").write_text(config)
    total_bytes = sum(p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                      for p, _ in catalog.values())
    port = free_port()
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([binary, "serve", "--open", "--config", str(work / "config.yaml"), "--data-dir", str(work / "data"),
                             "--listen", f"127.0.0.1:{port}", "--device-memory", f"{DEVICE_BUDGET_MIB}MiB",
                             "--max-sequences", "4", "--min-residency", "0s", "--preempt-after", "0s", "--wake-timeout", "120s"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ok(f"http://127.0.0.1:{port}/health", proc)
        warm = Tally()
        for name, (_, kind) in catalog.items():
            rng = random.Random(0)
            if kind == "embedding":
                embed(port, warm, name, rng)
            elif kind == "completion":
                completion(port, warm, name, 0.0, rng)
            else:
                # What each model keeps while it sleeps (its tokenizer, its compiled tool
                # grammar) is built here, so the baseline holds it too.
                chat(port, warm, name, 0.0, rng, stream=False)
                chat(port, warm, name, 0.0, rng, stream=False, tools=True)
        if warm.lost:
            print("warm-up failed:", *warm.lost, sep="\n  ", file=sys.stderr)
            return 1
        start = settle(port, proc.pid, 120)
        before = metrics(port)
        tally = Tally()
        weights = [1 / (rank + 1) ** 1.1 for rank in range(len(catalog))]
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(port, tally, catalog, weights, started, started + DURATION, seed))
                   for seed in range(CLIENTS)]
        for t in threads:
            t.start()
        samples = []
        while any(t.is_alive() for t in threads):
            time.sleep(min(PERIOD, 5))
            samples.append((time.perf_counter() - started, resources(proc.pid)))
        after = metrics(port)
        end = settle(port, proc.pid, 180)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    print(f"Soak: {len(catalog)} models ({total_bytes / 2**20:.0f} MiB of weights, "
          f"{total_bytes / (DEVICE_BUDGET_MIB << 20):.1f}x) on a {DEVICE_BUDGET_MIB} MiB device budget, "
          f"{CLIENTS} clients, {DURATION / 60:.1f} min of load\n")
    print("| outcome | requests |\n|---|---:|")
    for outcome, n in sorted(tally.outcomes.items(), key=lambda kv: -kv[1]):
        print(f"| {outcome} | {n} |")
    print(f"| **total** | {sum(tally.outcomes.values())} |\n")
    print(f"Wakes: {after['wakes'] - before['wakes']:.0f}; preemptions: {after['preemptions'] - before['preemptions']:.0f}\n")
    print(f"| period (from start) | streams | TTFT p50 (ms) | TTFT p99 (ms) |\n|---|---:|---:|---:|")
    for period in sorted(tally.ttft):
        values = [v for v in tally.ttft[period] if v is not None]
        print(f"| {period * PERIOD:.0f}–{(period + 1) * PERIOD:.0f} s | {len(values)} | "
              f"{percentile(values, 50) * 1000:.0f} | {percentile(values, 99) * 1000:.0f} |")
    peak = max((s["rss"] for _, s in samples), default=0)
    print(f"\n| server | start | end | peak under load |\n|---|---:|---:|---:|")
    print(f"| resident memory (MiB) | {start['rss'] / 2**20:.0f} | {end['rss'] / 2**20:.0f} | {peak / 2**20:.0f} |")
    print(f"| open file descriptors | {start['fds']} | {end['fds']} | {max((s['fds'] for _, s in samples), default=0)} |")
    print(f"| threads | {start['threads']} | {end['threads']} | {max((s['threads'] for _, s in samples), default=0)} |")

    failures = [f"lost: {x}" for x in tally.lost[:20]]
    rss_limit = start["rss"] * (1 + RSS_TOLERANCE[0]) + RSS_TOLERANCE[1]
    if end["rss"] > rss_limit:
        failures.append(f"resident memory {end['rss'] >> 20} MiB at the end, over {int(rss_limit) >> 20} MiB")
    if end["fds"] > start["fds"] + FD_TOLERANCE:
        failures.append(f"{end['fds']} descriptors open at the end, {start['fds']} at the start")
    if end["threads"] > start["threads"] + THREAD_TOLERANCE:
        failures.append(f"{end['threads']} threads at the end, {start['threads']} at the start")
    print(f"\nLost requests: {len(tally.lost)}. Back to baseline: "
          f"memory within {RSS_TOLERANCE[0]:.0%} + {RSS_TOLERANCE[1] >> 20} MiB, descriptors within {FD_TOLERANCE}, "
          f"threads within {THREAD_TOLERANCE}.")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    # In smoke mode the run only has to complete.
    return 1 if failures and not SMOKE else 0


if __name__ == "__main__":
    sys.exit(main())
