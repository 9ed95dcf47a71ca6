"""The GPU check of the builtin engine on a Hugging Face checkpoint: a
random-weight bf16 model in the Llama layout (about 8B parameters, Llama 3
8B's shape) written here, served by `greenthread serve` and measured next to
PyTorch/transformers on the same files in the same run:

- tokens/s decoding one stream, and all streams together at 16 at once;
- time to first token of a 512-token prompt (prefill);
- wake from the RAM tier and from the disk tier, in seconds and GB/s,
  next to the pinned host-to-device bound; sleep time; the server's device
  memory after sleep (NVML).

Prints a Markdown table last. `--shape tiny --no-torch` runs the same steps
in seconds on a CPU (the test suite does, so the script cannot rot).

    python3 scripts/gpu/builtin_check.py BINARY [--shape 8b|tiny] [--no-torch] [--dir DIR]
"""
import argparse
import json
import struct
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from common import gpu_memory_of, serve

SHAPES = {
    "8b": dict(hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=128256),
    "tiny": dict(hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=2048),
}
STREAMS = 16
DECODE_TOKENS = 128
PREFILL_TOKENS = 512
MODEL = "random-llama"
# bf16 bit patterns: sign and 7 random mantissa bits over a fixed exponent, |w| in [2^-7, 2^-6).
SMALL_EXPONENT = (127 - 7) << 7
ONE = 0x3F80


def byte_characters() -> list[str]:
    """GPT-2's byte-level alphabet: byte b is spelled by character [b]."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def tokenizer_files(vocab: int) -> dict:
    """A byte-level BPE vocabulary of `vocab` tokens: the 256 bytes, filler
    words of two and three bytes (no merges reach them: every byte of a
    prompt is one token), and two special tokens at the end."""
    alphabet = byte_characters()
    tokens = list(alphabet)
    for a in alphabet:
        for b in alphabet:
            tokens.append(a + b)
    for a in alphabet:
        for b in alphabet:
            for c in alphabet[:8]:
                tokens.append(a + b + c)
    tokens = tokens[: vocab - 2] + ["<|begin_of_text|>", "<|eot_id|>"]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    added = [{"id": vocab - 2 + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(tokens[-2:])]
    tokenizer = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
                 "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
                 "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                           "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                           "ignore_merges": False, "vocab": {t: i for i, t in enumerate(tokens)}, "merges": []}}
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": True,
              "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"}
    return {"tokenizer.json": tokenizer, "tokenizer_config.json": config}


def write_checkpoint(out: Path, shape: dict, seed: int = 0) -> int:
    """Writes the model; returns the bytes of its weights."""
    h, ff, v, nh, nkv = shape["hidden"], shape["ffn"], shape["vocab"], shape["heads"], shape["kv_heads"]
    d = h // nh
    tensors = [("model.embed_tokens.weight", [v, h])]
    for i in range(shape["layers"]):
        p = f"model.layers.{i}."
        tensors += [(p + "input_layernorm.weight", [h]), (p + "self_attn.q_proj.weight", [nh * d, h]),
                    (p + "self_attn.k_proj.weight", [nkv * d, h]), (p + "self_attn.v_proj.weight", [nkv * d, h]),
                    (p + "self_attn.o_proj.weight", [h, nh * d]), (p + "post_attention_layernorm.weight", [h]),
                    (p + "mlp.gate_proj.weight", [ff, h]), (p + "mlp.up_proj.weight", [ff, h]),
                    (p + "mlp.down_proj.weight", [h, ff])]
    tensors += [("model.norm.weight", [h]), ("lm_head.weight", [v, h])]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, dims in tensors:
        size = int(np.prod(dims)) * 2
        header[name] = {"dtype": "BF16", "shape": dims, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name, dims in tensors:
            count = int(np.prod(dims))
            if len(dims) == 1:
                f.write(np.full(count, ONE, dtype=np.uint16).tobytes())
                continue
            for start in range(0, count, 1 << 26):
                bits = rng.integers(0, 1 << 16, size=min(1 << 26, count - start), dtype=np.uint16)
                f.write(((bits & 0x807F) | SMALL_EXPONENT).astype(np.uint16).tobytes())
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
              "intermediate_size": ff, "num_hidden_layers": shape["layers"], "num_attention_heads": nh,
              "num_key_value_heads": nkv, "head_dim": d, "hidden_act": "silu", "max_position_embeddings": 8192,
              "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "vocab_size": v, "tie_word_embeddings": False,
              "bos_token_id": v - 2, "eos_token_id": v - 1, "torch_dtype": "bfloat16"}
    files = {"config.json": config, **tokenizer_files(v), "generation_config.json": {"eos_token_id": v - 1}}
    for name, value in files.items():
        (out / name).write_text(json.dumps(value, ensure_ascii=False))
    return offset


def stream(served, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """Streams a completion; returns (time to first token, seconds from the first token to the last, tokens)."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    request = urllib.request.Request(served.base + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json",
                                              "authorization": f"Bearer {served.token}"})
    started = time.perf_counter()
    first = last = None
    tokens = 0
    with urllib.request.urlopen(request, timeout=900) as r:
        for line in r:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices"):
                last = time.perf_counter()
                first = first or last
    return first - started, last - first, tokens


def measure_greenthread(binary: str, checkpoint: Path, work: Path, weight_bytes: int) -> dict:
    config = (f"models:\n  - name: {MODEL}\n    artifact: {checkpoint}\n    context_length: 2048\n"
              f"    idle_timeout: 1h\n    max_concurrency: {STREAMS}\n")
    common = ["--artifact-dir", str(checkpoint.parent), "--wake-timeout", "10m"]
    log = work / "server.log"
    out = {}
    with serve(binary, config, work, *common, "--ram-cache", f"{weight_bytes * 2 // (1 << 20)}MiB", log=log) as s:
        started = time.perf_counter()
        stream(s, "a", 1)
        out["first answer after start (s)"] = time.perf_counter() - started
        stream(s, "b" * PREFILL_TOKENS, 1)
        out["prefill 512 tokens, time to first token (s)"] = stream(s, "c" * PREFILL_TOKENS, 1)[0]
        _, seconds, tokens = stream(s, "a", DECODE_TOKENS)
        out["decode, 1 stream (tokens/s)"] = (tokens - 1) / seconds
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(stream(s, f"stream {i}", DECODE_TOKENS)))
                   for i in range(STREAMS)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out[f"decode, {STREAMS} streams together (tokens/s)"] = sum(r[2] for r in results) / (time.perf_counter() - started)
        out["sleep (s)"] = s.sleep(MODEL)
        out["server's device memory asleep (NVML, MiB)"] = gpu_memory_of(s.proc.pid)
        stream(s, "a", 1)
        wake = s.status(MODEL)["last_wake"]
        out[f"wake from {wake['from_tier']} (s)"] = wake["seconds"]
        out[f"wake from {wake['from_tier']} (GB/s)"] = weight_bytes / wake["seconds"] / 1e9
    # Restarted without room in RAM: the verified disk copy is all it has.
    with serve(binary, config, work, *common, "--ram-cache", "1MiB", log=log) as s:
        stream(s, "a", 1)
        wake = s.status(MODEL)["last_wake"]
        out[f"wake from {wake['from_tier']} (s)"] = wake["seconds"]
        out[f"wake from {wake['from_tier']} (GB/s)"] = weight_bytes / wake["seconds"] / 1e9
    return out


def measure_transformers(checkpoint: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.bfloat16).to("cuda").eval()
    out = {}

    def timed(fn) -> float:
        torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - started

    prompt = torch.full((1, PREFILL_TOKENS), 97, device="cuda")
    with torch.inference_mode():
        model(prompt)
        out["prefill 512 tokens, time to first token (s)"] = timed(lambda: model(prompt))
        for batch, key in [(1, "decode, 1 stream (tokens/s)"), (STREAMS, f"decode, {STREAMS} streams together (tokens/s)")]:
            ids = torch.full((batch, 8), 97, device="cuda")
            generate = lambda: model.generate(ids, max_new_tokens=DECODE_TOKENS, min_new_tokens=DECODE_TOKENS,
                                              do_sample=False, pad_token_id=0)
            out[key] = batch * DECODE_TOKENS / timed(generate)
    del model
    torch.cuda.empty_cache()
    return out


def pinned_bound() -> float | None:
    try:
        import torch
        from engine_check import pinned_bound as bound
        return bound() if torch.cuda.is_available() else None
    except ImportError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="8b")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch/transformers and the pinned bound")
    parser.add_argument("--dir", type=Path, default=None, help="where the checkpoint is written (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        checkpoint = work / "models" / MODEL
        started = time.perf_counter()
        weight_bytes = write_checkpoint(checkpoint, SHAPES[args.shape])
        written = time.perf_counter() - started
        reference = {} if args.no_torch else measure_transformers(checkpoint)
        bound = None if args.no_torch else pinned_bound()
        try:
            ours = measure_greenthread(args.binary, checkpoint, work / "serve", weight_bytes)
        except BaseException:
            print((work / "serve" / "server.log").read_text()[-4000:], file=sys.stderr)
            raise
    params = weight_bytes / 2 / 1e9
    print()
    print(f"| builtin engine, random bf16 Llama ({params:.2f}B parameters, {weight_bytes / 1e9:.1f} GB; written in {written:.0f} s)"
          " | greenthread | transformers | greenthread's advantage |")
    print("|---|---:|---:|---:|")
    for key, value in ours.items():
        peer = reference.get(key)
        if peer is None and bound is not None and key.endswith("(GB/s)"):
            print(f"| {key} (pinned H2D bound {bound:.1f}) | {value:.2f} | | {value / bound:.2f} of the bound |")
        elif peer is None:
            print(f"| {key} | {value:.2f} | | |")
        else:
            ratio = value / peer if "tokens/s" in key else peer / value
            print(f"| {key} | {value:.2f} | {peer:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
