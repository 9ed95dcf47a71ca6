"""What the GPU checks share: a `greenthread serve` to start and stop, its
HTTP and GraphQL calls, and NVML's view of a process's device memory."""
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(base + path, data=data, headers=headers), timeout=900) as r:
        return json.load(r)


def gpu_memory_of(pid: int) -> int:
    """MiB of device memory NVML reports for `pid` (0 when it holds none, or without nvidia-smi)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0
    for line in out.splitlines():
        p, used = (x.strip() for x in line.split(","))
        if p == str(pid):
            return int(used)
    return 0


class Served:
    """A running `greenthread serve`: its admin token for management, and an
    inference key (`token`) for the model APIs."""

    def __init__(self, base: str, admin: str, proc: subprocess.Popen):
        self.base, self.admin, self.proc = base, admin, proc
        key = self.graphql("mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { message } } }",
                           {"i": {"project": "default", "name": "gpu-check", "scopes": ["inference"]}})["createApiKey"]
        self.token = key["secret"]

    def call(self, path: str, body: dict | None = None) -> dict:
        return call(self.base, path, body, self.token)

    def graphql(self, query: str, variables: dict) -> dict:
        answer = call(self.base, "/graphql", {"query": query, "variables": variables}, self.admin)
        data = answer.get("data") or {}
        errors = answer.get("errors") or [e for v in data.values() if v for e in v.get("userErrors", [])]
        if errors:
            raise SystemExit(f"GraphQL: {errors}")
        return data

    def status(self, name: str) -> dict:
        return next(m for m in call(self.base, "/status", token=self.admin)["models"] if m["name"] == name)

    def sleep(self, name: str, timeout: float = 300) -> float:
        """Puts `name` to sleep; returns the seconds until it sleeps."""
        started = time.perf_counter()
        self.graphql("mutation($i: ModelActionInput!) { sleepModel(input: $i) { userErrors { message } } }",
                     {"i": {"name": name}})
        while self.status(name)["state"] != "sleeping":
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"{name} did not sleep within {timeout} s")
            time.sleep(0.05)
        return time.perf_counter() - started


@contextmanager
def serve(binary: str, config: str, data_dir: Path, *args: str, log: Path):
    """`greenthread serve` with `config` (YAML text), healthy; stopped with SIGTERM on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "config.yaml"
    config_path.write_text(config)
    token = "gt-gpu-" + secrets.token_hex(12)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log, "a") as out:
        proc = subprocess.Popen([binary, "serve", "--config", str(config_path), "--data-dir", str(data_dir / "data"),
                                 "--listen", f"127.0.0.1:{port}", *args],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "GREENTHREAD_ADMIN_TOKEN": token})
    try:
        for _ in range(1200):
            try:
                call(base, "/health")
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"greenthread exited with {proc.returncode}; see {log}")
                time.sleep(0.1)
        yield Served(base, token, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
