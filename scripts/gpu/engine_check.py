"""The GPU check of external engines: `greenthread serve` runs three
PyTorch engines (scripts/gpu/torch_engine.py, `kind: command`) whose
weights together exceed the GPU, and puts them to sleep with CUDA
checkpoints. Prints, for one engine, its device memory (NVML, through
nvidia-smi) awake, asleep and awake again, whether its answers after the
wake equal those before, the wake's time and GB/s next to the pinned
host-to-device bound measured here; then the three served in rotation.

    python3 scripts/gpu/engine_check.py BINARY [GIB_PER_ENGINE]
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(base + path, data=data, headers=headers), timeout=600) as r:
        return json.load(r)


def pinned_bound(gib: float = 4.0) -> float:
    """Host-to-device GB/s from pinned memory, the bound a restore can reach."""
    host = torch.empty(int(gib * (1 << 30)), dtype=torch.uint8).pin_memory()
    device = torch.empty_like(host, device="cuda")
    device.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    started = time.perf_counter()
    device.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    rate = host.numel() / (time.perf_counter() - started) / 1e9
    del host, device
    torch.cuda.empty_cache()
    return rate


def gpu_memory_of(pid: int) -> int:
    """MiB of device memory NVML reports for `pid` (0 when it holds none)."""
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        p, used = (x.strip() for x in line.split(","))
        if p == str(pid):
            return int(used)
    return 0


def engine_pid(name: str) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"torch_engine.py" in b" ".join(argv) and name.encode() in argv:
                return int(proc.name)
    raise SystemExit(f"no engine process for {name}")


def status(base: str, token: str, name: str) -> dict:
    return next(m for m in call(base, "/status", token=token)["models"] if m["name"] == name)


def ask(base: str, token: str, name: str) -> str:
    return call(base, "/v1/completions", {"model": name, "prompt": "checkpoint me", "max_tokens": 4}, token)["choices"][0]["text"]


def main() -> None:
    binary = sys.argv[1]
    total_gib = torch.cuda.get_device_properties(0).total_memory / (1 << 30)
    gib = float(sys.argv[2]) if len(sys.argv) > 2 else round(total_gib * 0.4, 1)
    bound = pinned_bound()
    names = ["torch-a", "torch-b", "torch-c"]
    admin = "gt-gpu-" + secrets.token_hex(12)
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "config.yaml"
        config.write_text("models:\n" + "".join(
            f"  - name: {n}\n    artifact: {HERE / 'torch_engine.py'}\n    idle_timeout: 10m\n"
            f"    engine:\n      kind: command\n      device_memory: {gib + 1.5}GiB\n      ready_timeout: 5m\n"
            f"      argv: [{sys.executable}, {HERE / 'torch_engine.py'}, --host, '{{host}}', --port, '{{port}}',"
            f" --gib, '{gib}', --seed, '{i}', --name, {n}]\n"
            for i, n in enumerate(names)))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(Path(work) / "server.log", "w")
        server = subprocess.Popen([binary, "serve", "--config", str(config), "--data-dir", f"{work}/data",
                                   "--listen", f"127.0.0.1:{port}", "--artifact-dir", str(HERE),
                                   "--device-memory", f"{int(total_gib) - 2}GiB", "--wake-timeout", "5m"],
                                  stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GREENTHREAD_ADMIN_TOKEN": admin})
        try:
            for _ in range(600):
                try:
                    call(base, "/health")
                    break
                except OSError:
                    time.sleep(0.2)
            first = ask(base, admin, "torch-a")
            pid = engine_pid("torch-a")
            awake_mib = gpu_memory_of(pid)
            call(base, "/graphql", {"query": 'mutation { sleepModel(name: "torch-a") { userErrors { message } } }'}, admin)
            for _ in range(600):
                if status(base, admin, "torch-a")["state"] == "sleeping":
                    break
                time.sleep(0.1)
            asleep_mib = gpu_memory_of(pid)
            same_process = Path(f"/proc/{pid}").exists()
            again = ask(base, admin, "torch-a")
            woken_mib = gpu_memory_of(pid)
            wake = status(base, admin, "torch-a")["last_wake"]["seconds"]
            rate = gib * (1 << 30) / wake / 1e9
            rotation = []
            for name in names * 2:
                started = time.perf_counter()
                ask(base, admin, name)
                rotation.append((name, time.perf_counter() - started))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
        print()
        print(f"| external engine on {torch.cuda.get_device_name()} ({gib} GiB of weights each) | value |")
        print("|---|---:|")
        print(f"| device memory awake (NVML, MiB) | {awake_mib} |")
        print(f"| device memory asleep (NVML, MiB) | {asleep_mib} |")
        print(f"| process kept while asleep | {same_process} |")
        print(f"| device memory after wake (NVML, MiB) | {woken_mib} |")
        print(f"| answers equal before and after | {first == again} |")
        print(f"| wake (restore) seconds | {wake:.2f} |")
        print(f"| wake GB/s / pinned H2D bound GB/s | {rate:.1f} / {bound:.1f} ({rate / bound:.2f}x) |")
        for name, seconds in rotation:
            print(f"| rotation: {name} first answer (s) | {seconds:.2f} |")


if __name__ == "__main__":
    main()
