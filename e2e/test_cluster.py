"""A scheduler and three node processes of the real binary on loopback, the
official openai SDK sending to six models, and one node killed with SIGKILL
in the middle of the traffic."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from conftest import OUT, free_port, wait_healthy

TOKEN = "e2e-cluster-token-0123456789abcdef"
GEMMA = "gemma-3-270m-q4_k_m.gguf"
QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
# Six models on two real files: four Gemma, two Qwen.
MODELS = {"g1": GEMMA, "g2": GEMMA, "g3": GEMMA, "g4": GEMMA, "q1": QWEN, "q2": QWEN}


def status(base, key=None):
    """`/status`: open on an `--open` server, else it needs a key (an admin key sees every project and the nodes)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/status", headers=headers), timeout=10) as r:
        return json.loads(r.read())


def wait_until(base, ready, timeout=120.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = status(base)
        if ready(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"cluster never got ready: {json.dumps(last)[:2000]}")


class Processes:
    def __init__(self):
        self.procs = {}

    def start(self, name, args, log_dir, env=None):
        log = open(log_dir / f"{name}.log", "a")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    def kill(self, name):
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    binary = os.environ["GREENTHREAD_BIN"]
    models_dir = Path(os.environ["GREENTHREAD_MODELS"])
    work = tmp_path_factory.mktemp("cluster")
    config = work / "config.yaml"
    config.write_text(
        "models:\n"
        + "".join(f"  - name: {name}\n    artifact: {models_dir / file}\n    context_length: 1024\n" for name, file in MODELS.items())
    )
    log_dir = OUT / "cluster"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    procs = Processes()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs.start(
        "control-plane",
        [binary, "serve", "--open", "--no-local-node", "--cluster-token", TOKEN, "--config", str(config),
         "--data-dir", str(work / "control"), "--listen", f"127.0.0.1:{port}",
         "--min-residency", "0s", "--preempt-after", "0s", "--wake-timeout", "180s"],
        log_dir,
    )
    try:
        wait_healthy(base, procs.procs["control-plane"], log_dir / "control-plane.log")
        for i in range(1, 4):
            node_port = free_port()
            procs.start(
                f"node-{i}",
                [binary, "node", "--control-plane", base, "--cluster-token", TOKEN, "--id", f"node-{i}",
                 "--listen", f"127.0.0.1:{node_port}", "--data-dir", str(work / f"node-{i}"),
                 "--device-memory", "1000MiB", "--max-sequences", "4"],
                log_dir,
            )
        wait_until(base, lambda s: len(s["nodes"]) == 3)
        yield base, procs
    finally:
        procs.stop_all()
        # Each node's cache holds copies of the models: gone with the module, not the run.
        shutil.rmtree(work, ignore_errors=True)


def test_three_nodes_serve_six_models_and_survive_a_killed_node(cluster):
    base, procs = cluster
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=2, timeout=300)

    def ask(model, stream=False):
        return client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=6, temperature=0, stream=stream
        )

    for model in MODELS:
        assert ask(model).choices[0].message.content

    # The gateway passes the request's id to the node that answers it: the
    # node's access line names the same request.
    traced = client.chat.completions.with_raw_response.create(
        model=next(iter(MODELS)), messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
        extra_headers={"x-request-id": "cluster-trace-1"})
    assert traced.headers["x-request-id"] == "cluster-trace-1"
    node_logs = lambda: "".join((OUT / "cluster" / f"node-{i}.log").read_text() for i in range(1, 4))
    wait_until(base, lambda _: "cluster-trace-1" in node_logs(), timeout=10)


    placed = status(base)
    hosts = {r["node"] for m in placed["models"] for r in m["replica_list"] if r["state"] == "serving"}
    assert len(hosts) >= 2, f"six models on nodes with room for two each must spread: {hosts}"
    victim = max(hosts, key=lambda n: sum(r["node"] == n and r["state"] == "serving" for m in placed["models"] for r in m["replica_list"]))

    outcomes = []
    lock = threading.Lock()
    stop = threading.Event()

    def traffic(model):
        while not stop.is_set():
            got_chunk = False
            try:
                for chunk in ask(model, stream=True):
                    got_chunk = True
                with lock:
                    outcomes.append(("ok", model))
            except openai.APIError as e:
                with lock:
                    outcomes.append(("mid-stream" if got_chunk else "failed", f"{model}: {e}"))

    threads = [threading.Thread(target=traffic, args=(m,)) for m in MODELS]
    for t in threads:
        t.start()
    time.sleep(3)
    procs.kill(victim)
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(timeout=300)

    failed = [o for o in outcomes if o[0] == "failed"]
    assert not failed, f"requests that had not started streaming must be retried elsewhere: {failed}"
    assert sum(o[0] == "ok" for o in outcomes) > len(MODELS), outcomes
    # Streams cut on the dead node end with an error the SDK raises; nothing else is lost.
    after = wait_until(base, lambda s: len(s["nodes"]) == 2 and victim not in {n["id"] for n in s["nodes"]})
    for model in MODELS:
        assert ask(model).choices[0].message.content

    final = status(base)
    for m in final["models"]:
        for r in m["replica_list"]:
            assert r["node"] != victim, f"{m['name']} still listed on the dead node"
    assert any(r["state"] == "serving" for m in final["models"] for r in m["replica_list"]), after
