"""The GPU check of external engines: `greenthread serve` runs three
PyTorch engines (scripts/gpu/torch_engine.py, `kind: command`) whose
weights together exceed the GPU, and puts them to sleep with CUDA
checkpoints. Prints, for one engine, its device memory (NVML, through
nvidia-smi) awake, asleep and awake again, whether its answers after the
wake equal those before, the wake's time and GB/s next to the pinned
host-to-device bound measured here; then the three served in rotation.

    python3 scripts/gpu/engine_check.py BINARY [GIB_PER_ENGINE]
"""
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import gpu_memory_of, serve

HERE = Path(__file__).resolve().parent


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


def ask(served, name: str) -> str:
    return served.call("/v1/completions", {"model": name, "prompt": "checkpoint me", "max_tokens": 4})["choices"][0]["text"]


def main() -> None:
    binary = sys.argv[1]
    total_gib = torch.cuda.get_device_properties(0).total_memory / (1 << 30)
    gib = float(sys.argv[2]) if len(sys.argv) > 2 else round(total_gib * 0.4, 1)
    bound = pinned_bound()
    names = ["torch-a", "torch-b", "torch-c"]
    with tempfile.TemporaryDirectory() as work:
        config = ("models:\n" + "".join(
            f"  - name: {n}\n    artifact: {HERE / 'torch_engine.py'}\n    idle_timeout: 10m\n"
            f"    engine:\n      kind: command\n      device_memory: {gib + 1.5}GiB\n      ready_timeout: 5m\n"
            f"      argv: [{sys.executable}, {HERE / 'torch_engine.py'}, --host, '{{host}}', --port, '{{port}}',"
            f" --gib, '{gib}', --seed, '{i}', --name, {n}]\n"
            for i, n in enumerate(names)))
        args = ["--artifact-dir", str(HERE), "--device-memory", f"{int(total_gib) - 2}GiB", "--wake-timeout", "5m"]
        with serve(binary, config, Path(work), *args, log=Path(work) / "server.log") as served:
            first = ask(served, "torch-a")
            pid = engine_pid("torch-a")
            awake_mib = gpu_memory_of(pid)
            served.sleep("torch-a")
            asleep_mib = gpu_memory_of(pid)
            same_process = Path(f"/proc/{pid}").exists()
            again = ask(served, "torch-a")
            woken_mib = gpu_memory_of(pid)
            wake = served.status("torch-a")["last_wake"]["seconds"]
            rate = gib * (1 << 30) / wake / 1e9
            rotation = []
            for name in names * 2:
                started = time.perf_counter()
                ask(served, name)
                rotation.append((name, time.perf_counter() - started))
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
