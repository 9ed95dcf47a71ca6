"""A Hugging Face checkpoint served by the builtin engine: the real
SmolLM2-135M-Instruct (Llama architecture) written in the Hugging Face
layout from its GGUF file by scripts/gguf_to_hf.py — config.json, f16
model.safetensors with Llama's query and key rows in halves, tokenizer.json
with SmolLM's digit-splitting pre-tokenizer, tokenizer_config.json with its
ChatML template — asked through the official openai SDK, streamed and not,
put to sleep and woken."""
import hashlib
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from conftest import OUT, Server, create_key, free_port, wait_healthy
from test_speech import put_to_sleep

ROOT = Path(__file__).resolve().parent.parent
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "smollm2"
# The conversion is deterministic: the same GGUF gives these bytes.
CHECKPOINT_SHA256 = "d8d8571b3af99053c8ad455ce009d8479eec5da515f80a417c075d0a7f317904"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    gguf = Path(os.environ["GREENTHREAD_MODELS"]) / GGUF
    assert gguf.exists(), f"{gguf} is missing: scripts/fetch_model.py smollm2-135m-instruct"
    out = tmp_path_factory.mktemp("checkpoint") / "SmolLM2-135M-Instruct"
    subprocess.run([sys.executable, str(ROOT / "scripts/gguf_to_hf.py"), str(gguf), str(out)], check=True)
    return out


def test_the_conversion_writes_the_hugging_face_layout_reproducibly(checkpoint):
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    digest = hashlib.sha256((checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert digest == CHECKPOINT_SHA256


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    work = tmp_path_factory.mktemp("hf")
    config = work / "config.yaml"
    config.write_text(f"models:\n  - name: {MODEL}\n    artifact: {checkpoint}\n    context_length: 2048\n")
    OUT.mkdir(exist_ok=True)
    log = OUT / "hf-server.log"
    port = free_port()
    admin = "gt-e2e-admin-" + secrets.token_hex(16)
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [os.environ["GREENTHREAD_BIN"], "serve", "--config", str(config), "--data-dir", str(work / "data"),
             "--listen", f"127.0.0.1:{port}"],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "GREENTHREAD_ADMIN_TOKEN": admin},
        )
    srv = Server(f"http://127.0.0.1:{port}", proc, log, admin)
    try:
        wait_healthy(srv.base, proc, log)
        srv.api_key = create_key(srv.base, admin, "default", ["inference"])["secret"]
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=300)


def ask(client) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16, temperature=0)


def test_the_checkpoint_answers_paris_through_its_chat_template(client):
    answer = ask(client)
    text = answer.choices[0].message.content
    assert "Paris" in text, text
    # ChatML with SmolLM's default system prompt, rendered from tokenizer_config.json.
    assert answer.usage.prompt_tokens > 20, answer.usage
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_a_stream_gives_the_same_greedy_answer(client):
    whole = ask(client).choices[0].message.content
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16, temperature=0, stream=True)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == whole


def test_digits_split_one_by_one_as_smollm_does(client):
    # SmolLM's pre-tokenizer splits digits singly: 12345 is five tokens, echoed back whole.
    answer = client.completions.create(model=MODEL, prompt="12345", max_tokens=1, temperature=0)
    assert answer.usage.prompt_tokens == 5, answer.usage


def test_the_checkpoint_sleeps_and_wakes_to_the_same_answer(server, client):
    before = ask(client).choices[0].message.content
    assert put_to_sleep(server, MODEL) == "CHAT"
    assert ask(client).choices[0].message.content == before
