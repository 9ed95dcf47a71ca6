"""A Whisper model in CTranslate2's format (faster-whisper's `model.bin`) as
a Hugging Face transformers folder: `model.safetensors`, `config.json` and
`tokenizer.json`, the layout GreenThread's Whisper engine loads.

CTranslate2 keeps Whisper's weights unquantized (float16 here) under its
own names, with each attention's query, key and value projections fused
into one matrix; this splits them back (rows are contiguous, so each part
is a byte slice) and renames every tensor. Only the standard library: the
script runs where the model is fetched, before any Python environment.

    python3 scripts/whisper_ct2.py CT2_FOLDER OUT_FOLDER
"""
import json
import struct
import sys
from pathlib import Path

# CTranslate2's dtype codes, as safetensors names them (with their sizes).
DTYPES = {0: ("F32", 4), 1: ("I8", 1), 2: ("I16", 2), 3: ("I32", 4), 4: ("F16", 2), 5: ("BF16", 2)}


class Variable:
    def __init__(self, dtype: str, size: int, shape: list[int], data: memoryview):
        self.dtype, self.size, self.shape, self.data = dtype, size, shape, data

    def rows(self, start: int, count: int) -> "Variable":
        """Rows `start..start+count` of a matrix or vector."""
        row = self.size
        for d in self.shape[1:]:
            row *= d
        return Variable(self.dtype, self.size, [count, *self.shape[1:]], self.data[start * row:(start + count) * row])

    def scalar(self) -> int:
        code = {"I8": "<b", "I16": "<h", "I32": "<i"}[self.dtype]
        return struct.unpack_from(code, self.data)[0]


def read_ct2(path: Path) -> tuple[str, int, dict[str, Variable]]:
    """The spec name, its revision and the variables of a CTranslate2 `model.bin`."""
    raw = memoryview(path.read_bytes())
    at = 0

    def take(fmt: str):
        nonlocal at
        value = struct.unpack_from(fmt, raw, at)
        at += struct.calcsize(fmt)
        return value[0]

    def text() -> str:
        nonlocal at
        n = take("<H")
        value = bytes(raw[at:at + n]).rstrip(b"\0").decode()
        at += n
        return value

    version = take("<I")
    if version < 5:
        sys.exit(f"error: {path}: CTranslate2 model version {version} is too old")
    spec, revision, count = text(), take("<I"), take("<I")
    variables = {}
    for _ in range(count):
        name = text()
        shape = [take("<I") for _ in range(take("<B"))]
        code, nbytes = take("<B"), take("<I")
        dtype, size = DTYPES[code]
        variables[name] = Variable(dtype, size, shape, raw[at:at + nbytes])
        at += nbytes
    return spec, revision, variables


def convert(source: Path, dest: Path) -> None:
    spec, revision, v = read_ct2(source / "model.bin")
    if spec != "WhisperSpec":
        sys.exit(f"error: {source}: a {spec} model, not Whisper")
    out: dict[str, Variable] = {}

    def put(name: str, var: Variable) -> None:
        out[name] = var

    def norm(ct: str, hf: str) -> None:
        put(f"{hf}.weight", v[f"{ct}/gamma"])
        put(f"{hf}.bias", v[f"{ct}/beta"])

    def linear(ct: str, hf: str) -> None:
        put(f"{hf}.weight", v[f"{ct}/weight"])
        if f"{ct}/bias" in v:
            put(f"{hf}.bias", v[f"{ct}/bias"])

    def fused(ct: str, hf: str, parts: list[str]) -> None:
        weight, bias = v[f"{ct}/weight"], v[f"{ct}/bias"]
        width = weight.shape[1]
        for i, part in enumerate(parts):
            put(f"{hf}.{part}.weight", weight.rows(i * width, width))
            piece = bias.rows(i * width, width)
            # Whisper's key projection has no bias: CTranslate2 stores zeros for it.
            if part == "k_proj":
                if any(piece.data):
                    sys.exit(f"error: {ct}: the key projection has a bias; this model is not Whisper's")
            else:
                put(f"{hf}.{part}.bias", piece)

    def layers(side: str) -> int:
        # `layer_N/…`, not `layer_norm/…`.
        return len({k.split("/")[1] for k in v if k.startswith(f"{side}/layer_") and k.split("/")[1][6:].isdigit()})

    encoder_layers, decoder_layers = layers("encoder"), layers("decoder")
    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    put("model.encoder.embed_positions.weight", v["encoder/position_encodings/encodings"])
    for i in range(encoder_layers):
        ct, hf = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        fused(f"{ct}/self_attention/linear_0", f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"])
        linear(f"{ct}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
        norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        linear(f"{ct}/ffn/linear_0", f"{hf}.fc1")
        linear(f"{ct}/ffn/linear_1", f"{hf}.fc2")
        norm(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")
    norm("encoder/layer_norm", "model.encoder.layer_norm")
    put("model.decoder.embed_tokens.weight", v["decoder/embeddings/weight"])
    put("model.decoder.embed_positions.weight", v["decoder/position_encodings/encodings"])
    for i in range(decoder_layers):
        ct, hf = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        fused(f"{ct}/self_attention/linear_0", f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"])
        linear(f"{ct}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
        norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        linear(f"{ct}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
        fused(f"{ct}/attention/linear_1", f"{hf}.encoder_attn", ["k_proj", "v_proj"])
        linear(f"{ct}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
        norm(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
        linear(f"{ct}/ffn/linear_0", f"{hf}.fc1")
        linear(f"{ct}/ffn/linear_1", f"{hf}.fc2")
        norm(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")
    norm("decoder/layer_norm", "model.decoder.layer_norm")

    dest.mkdir(parents=True, exist_ok=True)
    write_safetensors(dest / "model.safetensors", out)
    ct2_config = json.loads((source / "config.json").read_text())
    vocab, width = v["decoder/embeddings/weight"].shape
    multilingual = vocab >= 51865
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "activation_function": "gelu",
        "d_model": width,
        "vocab_size": vocab,
        "encoder_layers": encoder_layers,
        "decoder_layers": decoder_layers,
        "encoder_attention_heads": v["encoder/num_heads"].scalar(),
        "decoder_attention_heads": v["decoder/num_heads"].scalar(),
        "encoder_ffn_dim": v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        "decoder_ffn_dim": v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        "num_mel_bins": v["encoder/conv1/weight"].shape[1],
        "max_source_positions": v["encoder/position_encodings/encodings"].shape[0],
        "max_target_positions": v["decoder/position_encodings/encodings"].shape[0],
        "tie_word_embeddings": True,
        "decoder_start_token_id": 50258 if multilingual else 50257,
        "eos_token_id": 50257 if multilingual else 50256,
        "suppress_tokens": ct2_config.get("suppress_ids", []),
        "begin_suppress_tokens": ct2_config.get("suppress_ids_begin", []),
        "alignment_heads": ct2_config.get("alignment_heads"),
        "lang_ids": ct2_config.get("lang_ids"),
        "converted_from": f"CTranslate2 WhisperSpec revision {revision}",
    }
    (dest / "config.json").write_text(json.dumps(config, indent=1))
    (dest / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())


def write_safetensors(path: Path, tensors: dict[str, Variable]) -> None:
    """Tensors in name order, the header padded with spaces to 8 bytes."""
    header, offset = {}, 0
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + len(t.data)]}
        offset += len(t.data)
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for name in sorted(tensors):
            out.write(tensors[name].data)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
