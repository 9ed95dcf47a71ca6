#!/usr/bin/env python3
"""Write a Llama or Qwen2 GGUF model as a Hugging Face checkpoint directory:
config.json, generation_config.json, model.safetensors (f16, one file),
tokenizer.json, tokenizer_config.json (with the GGUF's chat template).

The package registries carry real chat models only as GGUF files; this gives
the builtin engine's Hugging Face path a real trained model to answer with.
Weights are the GGUF's dequantized (as exact as its quantization, not as the
original release). llama.cpp's converter permutes Llama's query and key rows
for interleaved rotary pairs; they are put back into halves here.

    python3 scripts/gguf_to_hf.py IN.gguf OUT_DIR

Needs numpy, gguf and safetensors (the e2e environment has them). Writes
into OUT_DIR.partial and renames it into place, so OUT_DIR is whole or absent.
"""
import json
import shutil
import sys
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import save_file

# GGUF tensor names of a block, and the checkpoint's.
BLOCK = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
TOP = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
       "output.weight": "lm_head.weight"}
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
# GGUF token types that are added tokens in a tokenizer.json: control (special) and user-defined.
CONTROL, USER_DEFINED = 3, 4


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def halves(rows: np.ndarray, heads: int) -> np.ndarray:
    """Undoes llama.cpp's permutation: row 2i+s of a head becomes row s*d/2+i."""
    return rows.reshape(heads, rows.shape[0] // heads // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def pre_tokenizer(pre: str) -> dict:
    if pre == "qwen2":
        split = {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False}
        return {"type": "Sequence", "pretokenizers": [split, dict(BYTE_LEVEL, use_regex=False)]}
    if pre == "smollm":
        return {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL]}
    if pre in ("gpt2", "default"):
        return BYTE_LEVEL
    sys.exit(f"error: tokenizer.ggml.pre {pre!r} is not one this script writes (qwen2, smollm, gpt2)")


def convert(source: Path, out: Path) -> None:
    reader = gguf.GGUFReader(source)
    arch = field(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        sys.exit(f"error: architecture {arch!r}: this script writes llama and qwen2")
    if field(reader, "tokenizer.ggml.model") != "gpt2":
        sys.exit("error: only byte-level BPE vocabularies (tokenizer.ggml.model = gpt2) are written")
    key = lambda k, default=None: field(reader, f"{arch}.{k}", default)
    heads, kv_heads, hidden = key("attention.head_count"), key("attention.head_count_kv"), key("embedding_length")
    tensors = {}
    for t in reader.tensors:
        if t.name.startswith("blk."):
            _, layer, part, kind = t.name.split(".")
            name = f"model.layers.{layer}.{BLOCK[part]}.{kind}"
        else:
            name = TOP[t.name]
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(x) for x in reversed(t.shape.tolist())])
        if arch == "llama" and part_is(t.name, "attn_q.weight"):
            w = halves(w, heads)
        elif arch == "llama" and part_is(t.name, "attn_k.weight"):
            w = halves(w, kv_heads)
        tensors[name] = np.ascontiguousarray(w.astype(np.float16))

    tokens, types = field(reader, "tokenizer.ggml.tokens"), field(reader, "tokenizer.ggml.token_type")
    bos, eos = field(reader, "tokenizer.ggml.bos_token_id"), field(reader, "tokenizer.ggml.eos_token_id")
    text = lambda i: tokens[i] if i is not None else None
    added = [{"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": ty == CONTROL} for i, (tok, ty) in enumerate(zip(tokens, types)) if ty in (CONTROL, USER_DEFINED)]
    config = {
        "architectures": ["LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM"], "model_type": arch,
        "hidden_size": hidden, "intermediate_size": key("feed_forward_length"),
        "num_hidden_layers": key("block_count"), "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "head_dim": hidden // heads, "hidden_act": "silu", "max_position_embeddings": key("context_length"),
        "rms_norm_eps": float(key("attention.layer_norm_rms_epsilon")), "rope_theta": float(key("rope.freq_base", 1e4)),
        "rope_scaling": None, "vocab_size": len(tokens), "tie_word_embeddings": "lm_head.weight" not in tensors,
        "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "float16",
        "_name_or_path": field(reader, "general.name", ""),
    }
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"} if arch == "qwen2" else None,
        "pre_tokenizer": pre_tokenizer(field(reader, "tokenizer.ggml.pre", "gpt2")),
        "post_processor": dict(BYTE_LEVEL, use_regex=False), "decoder": dict(BYTE_LEVEL, use_regex=False),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {tok: i for i, tok in enumerate(tokens)},
                  "merges": [m.split(" ", 1) for m in field(reader, "tokenizer.ggml.merges")]},
    }
    tokenizer_config = {
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
        "bos_token": text(bos), "eos_token": text(eos), "chat_template": field(reader, "tokenizer.chat_template"),
        "model_max_length": key("context_length"),
    }

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_file(tensors, partial / "model.safetensors", metadata={"format": "pt"})
    for name, value in [("config.json", config), ("tokenizer.json", tokenizer),
                        ("tokenizer_config.json", tokenizer_config),
                        ("generation_config.json", {"bos_token_id": bos, "eos_token_id": eos})]:
        (partial / name).write_text(json.dumps(value, ensure_ascii=False, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def part_is(name: str, suffix: str) -> bool:
    return name.endswith("." + suffix)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
