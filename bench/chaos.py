"""Chaos: a cluster on loopback — a scheduler, two nodes, a gateway and its
own PostgreSQL — under steady load through the gateway, with one part at a
time killed with SIGKILL and restarted: a node, the scheduler, the gateway,
PostgreSQL itself (the whole server process group, so it restarts through
crash recovery); then a node's disk cache folder filled to its budget by
other data, and the node restarted onto it.

Per fault it reports: requests sent and failed, split into those in flight
when the part died (they may fail, with an error), those sent while a
killed gateway was down (nothing listens: the connection is refused), and
any other failure (there should be none); requests that hung (no answer in
60 s: there should be none); the time from the kill until requests succeed
again. At the end: every answered request metered exactly once
(`usage_records` by request id), and the audit log and the keys unchanged.
Exits 1 when a promise is broken (in smoke mode it reports and exits 0).

    bench/chaos.sh     (GREENTHREAD_BENCH_SMOKE=1: shorter phases)
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from engines import free_port

SMOKE = bool(os.environ.get("GREENTHREAD_BENCH_SMOKE"))
STEADY = 3.0 if SMOKE else 10.0  # load before each fault, and after recovery
DOWN = 1.0 if SMOKE else 3.0  # how long a killed part stays down
CLIENTS = 3 if SMOKE else 4
HANG = 60.0
TOKEN = "chaos-cluster-token-0123456789abcdef"
ADMIN = "chaos-admin-" + uuid.uuid4().hex
MODELS = {"gemma": "gemma-3-270m-q4_k_m.gguf"} if SMOKE else {
    "gemma": "gemma-3-270m-q4_k_m.gguf", "qwen": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"}


class Part:
    """One process of the cluster, in its own process group."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict | None = None, health: str | None = None,
                 user: str | None = None):
        self.name, self.args, self.log, self.env, self.health, self.user = name, args, log, env, health, user
        self.proc = None

    def start(self):
        out = open(self.log, "a")
        # A direct child (no runuser in between), so a kill is reaped here and leaves no zombie.
        self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                                     user=self.user, group=self.user)
        if self.health:
            wait_for(lambda: ok(self.health), f"{self.name} to answer {self.health}", self)

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def wait_for(check, what: str, part: Part | None = None, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if part and part.proc.poll() is not None:
            sys.exit(f"{part.name} exited with {part.proc.returncode}:\n{part.log.read_text()[-3000:]}")
        if check():
            return
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


def postgres(work: Path, port: int) -> tuple[Part, list[str]]:
    """A private PostgreSQL cluster (the machine's own server is never touched)."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bins:
        sys.exit("PostgreSQL's server binaries are needed (scripts/chaos.sh installs them)")
    bin_dir = bins[-1]
    data = work / "pg"
    # PostgreSQL refuses to run as root: as its package's user then.
    user = "postgres" if os.geteuid() == 0 else None
    data.mkdir()
    if user:
        shutil.chown(data, user)
        shutil.chown(work, user)
    subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, stdout=subprocess.DEVNULL, user=user, group=user)
    args = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", "/tmp",
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"]
    psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "greenthread", "-At", "-c"]
    return Part("postgres", args, work / "postgres.log", user=user), psql


def sql(psql: list[str], query: str) -> str:
    return subprocess.run(psql + [query], check=True, capture_output=True, text=True).stdout.strip()


class Load:
    """Clients streaming short chat completions through the gateway, back to back."""

    def __init__(self, gateway: str, key: str):
        self.gateway, self.key = gateway, key
        self.records = []  # (request id, started, ended, outcome, detail)
        self.lock = threading.Lock()
        self.running = False
        self.threads = []

    def one(self, model: str):
        rid = "chaos-" + uuid.uuid4().hex
        body = json.dumps({"model": model, "max_tokens": 8, "stream": True, "temperature": 0,
                           "messages": [{"role": "user", "content": "Name a colour."}]}).encode()
        req = urllib.request.Request(self.gateway + "/v1/chat/completions", data=body, headers={
            "content-type": "application/json", "authorization": f"Bearer {self.key}", "x-request-id": rid})
        started = time.monotonic()
        outcome, detail = "answered", ""
        try:
            with urllib.request.urlopen(req, timeout=HANG) as r:
                done = any(line.startswith(b"data: [DONE]") for line in r)
                if not done:
                    outcome, detail = "error", "stream ended without [DONE]"
        except urllib.error.HTTPError as e:
            outcome, detail = "error", f"{e.code} {e.read()[:200]!r}"
        except TimeoutError:
            outcome = "hung"
        except OSError as e:
            if isinstance(e, ConnectionRefusedError) or isinstance(getattr(e, "reason", None), ConnectionRefusedError):
                outcome = "refused"
            else:
                outcome, detail = ("hung", str(e)) if "timed out" in str(e) else ("error", str(e))
        with self.lock:
            self.records.append((rid, started, time.monotonic(), outcome, detail))
        if outcome == "refused":
            time.sleep(0.05)  # nothing listens: a client retries at a human pace, not in a spin

    def client(self, seed: int):
        names = list(MODELS)
        i = seed
        while self.running:
            self.one(names[i % len(names)])
            i += 1

    def start(self):
        self.running = True
        self.threads = [threading.Thread(target=self.client, args=(s,)) for s in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join()

    def between(self, start: float, end: float):
        with self.lock:
            return [r for r in self.records if start <= r[1] < end]


def graphql(base: str, token: str, query: str, variables: dict) -> dict:
    req = urllib.request.Request(base + "/graphql", data=json.dumps({"query": query, "variables": variables}).encode(),
                                 headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.loads(r.read())
    if answer.get("errors"):
        sys.exit(f"GraphQL error: {answer}")
    return answer["data"]


def main() -> int:
    binary, models_dir = os.environ["GREENTHREAD_BIN"], Path(os.environ["GREENTHREAD_MODELS"])
    work = Path(tempfile.mkdtemp(prefix="gt-chaos-"))
    os.chmod(work, 0o755)
    pg_port, sched_port, gw_port = free_port(), free_port(), free_port()
    pg, psql = postgres(work, pg_port)
    database = f"postgres://postgres@127.0.0.1:{pg_port}/greenthread"
    config = work / "config.yaml"
    config.write_text("models:\n" + "".join(
        f"  - name: {n}\n    artifact: {models_dir / f}\n    context_length: 512\n" for n, f in MODELS.items()))
    env = {**os.environ, "GREENTHREAD_ADMIN_TOKEN": ADMIN}
    scheduler_url = f"http://127.0.0.1:{sched_port}"
    gateway_url = f"http://127.0.0.1:{gw_port}"
    disk_budget = 2 << 30
    parts = {"postgres": pg}
    parts["scheduler"] = Part("scheduler", [
        binary, "serve", "--no-local-node", "--cluster-token", TOKEN, "--database-url", database, "--config", str(config),
        "--data-dir", str(work / "scheduler"), "--listen", f"127.0.0.1:{sched_port}", "--wake-timeout", "120s",
        "--min-residency", "0s"], work / "scheduler.log", env, scheduler_url + "/health")
    for i in (1, 2):
        parts[f"node-{i}"] = Part(f"node-{i}", [
            binary, "node", "--control-plane", scheduler_url, "--cluster-token", TOKEN, "--id", f"node-{i}",
            "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(work / f"node-{i}"), "--device-memory", "1500MiB",
            "--disk-cache", f"{disk_budget >> 20}MiB", "--max-sequences", "4"], work / f"node-{i}.log")
    parts["gateway"] = Part("gateway", [
        binary, "gateway", "--scheduler", scheduler_url, "--cluster-token", TOKEN, "--database-url", database,
        "--listen", f"127.0.0.1:{gw_port}", "--wake-timeout", "120s"], work / "gateway.log", env, gateway_url + "/health")
    failures, rows = [], []
    load = None
    try:
        pg.start()
        wait_for(lambda: subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres"],
                                        capture_output=True).returncode == 0, "PostgreSQL", pg)
        subprocess.run(psql[:-4] + ["-d", "postgres", "-c", "CREATE DATABASE greenthread"], check=True, capture_output=True)
        for name in ("scheduler", "node-1", "node-2", "gateway"):
            parts[name].start()
        wait_for(lambda: len(json.loads(urllib.request.urlopen(urllib.request.Request(
            scheduler_url + "/status", headers={"authorization": f"Bearer {ADMIN}"}), timeout=5).read())["nodes"]) == 2,
            "both nodes to join")
        key = graphql(gateway_url, ADMIN, "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
                      {"i": {"project": "default", "name": "chaos", "scopes": ["inference"]}})["createApiKey"]["secret"]
        load = Load(gateway_url, key)
        for model in MODELS:  # every model awake once before the clock starts
            load.one(model)
        audit_before = sql(psql, "SELECT count(*) FROM audit_events")
        keys_before = sql(psql, "SELECT id, revoked_at, expires_at, scopes FROM api_keys ORDER BY id")
        load.records.clear()
        load.start()
        faults = ["node-1", "scheduler", "gateway", "postgres", "disk"]
        for fault in faults:
            time.sleep(STEADY)
            killed_at = time.monotonic()
            if fault == "disk":
                cache = work / "node-2" / "cache"
                used = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
                # Blocks really taken (not a sparse file), then the node restarted onto the full folder.
                fd = os.open(cache / "filler.bin", os.O_CREAT | os.O_WRONLY, 0o644)
                os.posix_fallocate(fd, 0, max(1, disk_budget - used))
                os.close(fd)
                parts["node-2"].kill()
                died_at = time.monotonic()
                parts["node-2"].start()
                restarted_at = time.monotonic()
            else:
                parts[fault].kill()
                died_at = time.monotonic()
                time.sleep(DOWN)
                parts[fault].start()
                if fault == "postgres":
                    wait_for(lambda: subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres"],
                                                    capture_output=True).returncode == 0, "PostgreSQL", pg)
                restarted_at = time.monotonic()
            time.sleep(STEADY)
            window = load.between(killed_at - STEADY, time.monotonic())
            # In flight: sent before the process was gone (SIGKILL takes a
            # moment: a connection it accepted meanwhile is reset, not refused)
            # and not answered before the signal.
            in_flight = [r for r in window if r[1] < died_at and r[2] > killed_at]
            after = [r for r in window if r[1] >= killed_at]
            down = [r for r in after if r[3] == "refused" and fault == "gateway" and r[1] < restarted_at]
            others = [r for r in window if r[3] != "answered" and r not in in_flight and r not in down]
            hung = [r for r in window if r[3] == "hung"]
            recovered = min((r[2] for r in after if r[3] == "answered"), default=None)
            rows.append((fault, len(window), len([r for r in in_flight if r[3] != "answered"]), len(in_flight),
                         len(down), len(others), len(hung),
                         f"{recovered - killed_at:.2f}" if recovered else "never"))
            failures += [f"{fault}: {r[0]} {r[3]} {r[4]} (sent {r[1] - killed_at:+.3f} s after the kill, "
                         f"ended {r[2] - killed_at:+.3f} s; the process was gone at {died_at - killed_at:+.3f} s)"
                         for r in others + hung]
            if recovered is None:
                failures.append(f"{fault}: no request succeeded after it")
        load.stop()
        time.sleep(1.0)  # the gateway's usage writer flushes within 0.1 s
        answered = {r[0] for r in load.records if r[3] == "answered"}
        metered = {}
        for line in sql(psql, "SELECT request_id, count(*) FROM usage_records WHERE request_id LIKE 'chaos-%' "
                               "GROUP BY request_id").splitlines():
            rid, n = line.split("|")
            metered[rid] = int(n)
        unmetered = sorted(answered - set(metered))
        twice = sorted(rid for rid, n in metered.items() if n > 1)
        audit_after = sql(psql, "SELECT count(*) FROM audit_events")
        keys_after = sql(psql, "SELECT id, revoked_at, expires_at, scopes FROM api_keys ORDER BY id")
    finally:
        if load:
            load.stop()
        for part in reversed(list(parts.values())):
            part.stop()

    print(f"Chaos: {CLIENTS} clients streaming through the gateway; each part down {DOWN:.0f} s; "
          f"{STEADY:.0f} s of load before and after each fault\n")
    print("| fault | requests | failed in flight / in flight | refused while the gateway was down | other failures | hung | recovered after (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for fault, n, failed_in_flight, in_flight, down, others, hung, recovered in rows:
        print(f"| {fault} | {n} | {failed_in_flight} / {in_flight} | {down} | {others} | {hung} | {recovered} |")
    print(f"\nUsage: {len(answered)} answered requests, {len(answered) - len(unmetered)} metered, "
          f"{len(unmetered)} not metered, {len(twice)} metered twice.")
    print(f"Audit events: {audit_before} before, {audit_after} after; keys {'unchanged' if keys_before == keys_after else 'CHANGED'}.")
    failures += [f"answered but not metered: {rid}" for rid in unmetered[:10]]
    failures += [f"metered twice: {rid}" for rid in twice[:10]]
    if audit_before != audit_after:
        failures.append(f"the audit log changed: {audit_before} -> {audit_after} events")
    if keys_before != keys_after:
        failures.append("the keys changed")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failures and not SMOKE else 0


if __name__ == "__main__":
    sys.exit(main())
