"""The API tier of a cluster with the real binary: `greenthread gateway` in
front of a scheduler (no node of its own) and a node, sharing the
scheduler's database. The official openai and anthropic SDKs talk to the
gateway only; the scheduler is killed with SIGKILL and restarted while a
request waits at the gateway."""
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

import anthropic
import openai
import pytest

from conftest import OUT, create_key, free_port, graphql, wait_healthy
from test_cluster import Processes, status

TOKEN = "e2e-gateway-token-0123456789abcdef"
MODELS = {"gemma": "gemma-3-270m-q4_k_m.gguf", "qwen": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"}


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    binary = os.environ["GREENTHREAD_BIN"]
    models_dir = Path(os.environ["GREENTHREAD_MODELS"])
    work = tmp_path_factory.mktemp("gateway")
    config = work / "config.yaml"
    config.write_text(
        "models:\n"
        + "".join(f"  - name: {name}\n    artifact: {models_dir / file}\n    context_length: 1024\n" for name, file in MODELS.items())
    )
    log_dir = OUT / "gateway"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    admin = "gt-e2e-admin-" + secrets.token_hex(16)
    env = {**os.environ, "GREENTHREAD_ADMIN_TOKEN": admin}
    procs = Processes()
    port, gateway_port = free_port(), free_port()
    scheduler = f"http://127.0.0.1:{port}"
    database = f"sqlite://{work / 'control' / 'greenthread.db'}?mode=rwc"
    scheduler_args = [
        binary, "serve", "--no-local-node", "--cluster-token", TOKEN, "--config", str(config),
        "--data-dir", str(work / "control"), "--listen", f"127.0.0.1:{port}", "--wake-timeout", "120s",
    ]
    procs.start("scheduler", scheduler_args, log_dir, env)
    try:
        wait_healthy(scheduler, procs.procs["scheduler"], log_dir / "scheduler.log")
        procs.start(
            "node",
            [binary, "node", "--control-plane", scheduler, "--cluster-token", TOKEN, "--id", "gpu-1",
             "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(work / "node"), "--device-memory", "2000MiB"],
            log_dir,
        )
        procs.start(
            "gateway",
            [binary, "gateway", "--scheduler", scheduler, "--cluster-token", TOKEN, "--database-url", database,
             "--listen", f"127.0.0.1:{gateway_port}", "--wake-timeout", "120s"],
            log_dir,
        )
        gateway = f"http://127.0.0.1:{gateway_port}"
        wait_healthy(gateway, procs.procs["gateway"], log_dir / "gateway.log")
        key = create_key(gateway, admin, "default", ["inference"])["secret"]
        yield {"gateway": gateway, "scheduler": scheduler, "admin": admin, "key": key, "procs": procs,
               "restart": lambda: procs.start("scheduler", scheduler_args, log_dir, env), "log_dir": log_dir}
    finally:
        procs.stop_all()
        # The node's cache holds copies of the models: gone with the module, not the run.
        shutil.rmtree(work, ignore_errors=True)


def test_the_sdks_talk_to_the_gateway_only(tier):
    client = openai.OpenAI(base_url=f"{tier['gateway']}/v1", api_key=tier["key"], max_retries=0, timeout=180)
    answer = client.chat.completions.create(
        model="qwen", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=8, temperature=0
    )
    assert "Paris" in answer.choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="gemma", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, stream=True
        )
        if c.choices
    )
    assert streamed.strip()
    message = anthropic.Anthropic(base_url=tier["gateway"], api_key=tier["key"], max_retries=0, timeout=180).messages.create(
        model="qwen",
        max_tokens=8,
        extra_body={"temperature": 0},  # greedy; this SDK version no longer exposes temperature
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert "Paris" in message.content[0].text
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}], max_tokens=2)

    # One id on every hop: the gateway's lease at the scheduler and its
    # forward to the node both carry the client's id, so each access line names it.
    traced = client.chat.completions.with_raw_response.create(
        model="qwen", messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
        extra_headers={"x-request-id": "gateway-trace-1"})
    assert traced.headers["x-request-id"] == "gateway-trace-1"
    logs = {name: tier["log_dir"] / f"{name}.log" for name in ("gateway", "scheduler", "node")}
    deadline = time.monotonic() + 10
    while not all("gateway-trace-1" in log.read_text() for log in logs.values()):
        assert time.monotonic() < deadline, {n: "gateway-trace-1" in log.read_text() for n, log in logs.items()}
        time.sleep(0.2)

    # The tokens came from the node, placed by the scheduler; the gateway reports the same.
    placed = status(tier["scheduler"], tier["admin"])
    serving = {m["name"]: [r["node"] for r in m["replica_list"] if r["state"] == "serving"] for m in placed["models"]}
    assert serving == {"gemma": ["gpu-1"], "qwen": ["gpu-1"]}, placed
    assert {m["name"]: m["state"] for m in status(tier["gateway"], tier["admin"])["models"]} == {"gemma": "serving", "qwen": "serving"}
    runtime = graphql(tier["gateway"], tier["admin"], "{ models { nodes { name runtime { state } } } }")
    assert {m["name"]: m["runtime"]["state"] for m in runtime["models"]["nodes"]} == {"gemma": "serving", "qwen": "serving"}


def test_a_request_waits_out_a_killed_scheduler(tier):
    client = openai.OpenAI(base_url=f"{tier['gateway']}/v1", api_key=tier["key"], max_retries=0, timeout=180)
    tier["procs"].kill("scheduler")
    result = {}

    def ask():
        try:
            r = client.chat.completions.create(
                model="qwen", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=8, temperature=0
            )
            result["answer"] = r.choices[0].message.content
        except openai.APIError as e:
            result["error"] = e

    waiting = threading.Thread(target=ask)
    waiting.start()
    time.sleep(2)
    assert waiting.is_alive(), f"the request must wait for a scheduler, not fail: {result}"
    # The management plane answers from the database meanwhile.
    keys = graphql(tier["gateway"], tier["admin"], "{ apiKeys { nodes { name } } }")["apiKeys"]["nodes"]
    assert keys

    tier["restart"]()
    waiting.join(timeout=120)
    assert "answer" in result, result
    assert "Paris" in result["answer"]
    # The new scheduler took the model as the node reported it: awake, no wake.
    qwen = next(m for m in status(tier["scheduler"], tier["admin"])["models"] if m["name"] == "qwen")
    assert qwen["state"] == "serving" and qwen["last_wake"] is None, qwen
