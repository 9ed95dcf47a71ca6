"""Starts the real `greenthread` binary with the real demo model for the SDK tests.

Environment (scripts/test.sh sets it):
  GREENTHREAD_BIN     the greenthread binary to test
  GREENTHREAD_MODELS  directory holding the demo model file and the embedding
                      model's folder (scripts/fetch_model.py fetches both)
Each run writes the server's log to e2e/out/<test session>/server.log and
prints its tail when a test fails.
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

DEMO_MODEL = "qwen2.5-coder-0.5b-instruct"
DEMO_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DEMO_ALIAS = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
# The embedding model, all-MiniLM-L6-v2: a folder in the Hugging Face layout.
EMBED_MODEL = "all-minilm-l6-v2"
EMBED_DIR_NAME = "all-minilm-l6-v2"
OUT = Path(__file__).parent / "out"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"greenthread exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"greenthread did not become healthy in {timeout}s:\n{log.read_text()[-4000:]}")


def graphql(base: str, token: str, query: str, variables: dict | None = None) -> dict:
    """One GraphQL request; fails the test on a GraphQL error."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"content-type": "application/json", "authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.loads(r.read())
    assert not answer.get("errors"), answer
    return answer["data"]


def create_key(base: str, admin: str, project: str, scopes: list[str], name: str = "e2e", **limits) -> dict:
    """A new API key: {"id", "secret"}. `limits`: requestsPerMinute, tokensPerMinute."""
    data = graphql(
        base,
        admin,
        "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret userErrors { message } } }",
        {"i": {"project": project, "name": name, "scopes": scopes, **limits}},
    )["createApiKey"]
    assert not data["userErrors"], data
    return {"id": data["apiKey"]["id"], "secret": data["secret"]}


class Server:
    def __init__(self, base: str, proc: subprocess.Popen, log: Path, admin: str = ""):
        self.base = base
        self.proc = proc
        self.log = log
        # The bootstrap admin credential the server was started with.
        self.admin = admin
        # An inference key of the default project, for the SDK.
        self.api_key = ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


class DnsZone:
    """A real DNS server on loopback (dnslib, UDP) answering the TXT records a
    test publishes; the server verifies custom domains against it."""

    def __init__(self):
        from dnslib import QTYPE, RCODE, RR, TXT
        from dnslib.server import BaseResolver, DNSServer

        records = self.records = {}

        class Records(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                if name not in records:
                    reply.header.rcode = RCODE.NXDOMAIN
                elif request.q.qtype == QTYPE.TXT:
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(records[name]), ttl=0))
                return reply

        self.port = free_port()
        self._server = DNSServer(Records(), address="127.0.0.1", port=self.port)
        self._server.start_thread()

    def publish(self, name: str, value: str) -> None:
        self.records[name.rstrip(".").lower()] = value

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def dns():
    zone = DnsZone()
    yield zone
    zone.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory, dns) -> Server:
    binary = os.environ.get("GREENTHREAD_BIN")
    models = os.environ.get("GREENTHREAD_MODELS")
    if not binary or not models:
        pytest.fail("GREENTHREAD_BIN and GREENTHREAD_MODELS must be set: run the e2e tests through scripts/test.sh")
    model_path = Path(models) / DEMO_FILE
    assert model_path.exists(), f"{model_path} is missing: scripts/fetch_model.py {DEMO_MODEL}"
    embed_dir = Path(models) / EMBED_DIR_NAME
    assert embed_dir.is_dir(), f"{embed_dir} is missing: scripts/fetch_model.py {EMBED_MODEL}"
    work = tmp_path_factory.mktemp("greenthread")
    config = work / "config.yaml"
    config.write_text(
        "models:\n"
        f"  - name: {DEMO_MODEL}\n"
        f"    artifact: {model_path}\n"
        f"    aliases: [{DEMO_ALIAS}]\n"
        "    context_length: 2048\n"
        f"  - name: {EMBED_MODEL}\n"
        f"    artifact: {embed_dir}\n"
    )
    OUT.mkdir(exist_ok=True)
    log = OUT / "server.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin = "gt-e2e-admin-" + secrets.token_hex(16)
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [binary, "serve", "--config", str(config), "--data-dir", str(work / "data"), "--listen", f"127.0.0.1:{port}",
             "--artifact-dir", models, "--rate-window", "2s", "--dns-server", f"127.0.0.1:{dns.port}"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "GREENTHREAD_ADMIN_TOKEN": admin},
        )
    srv = Server(base, proc, log, admin)
    try:
        wait_healthy(base, proc, log)
        srv.api_key = create_key(base, admin, "default", ["inference"])["secret"]
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, f"greenthread exited with {code} after SIGTERM:\n{srv.log_tail()}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        srv = item.funcargs.get("server")
        if isinstance(srv, Server):
            report.sections.append(("greenthread server log (tail)", srv.log_tail()))
