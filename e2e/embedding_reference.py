"""An independent NumPy reference of the all-MiniLM-L6-v2 sentence embedding.

What sentence-transformers computes for this model, written out in float32
NumPy so the server's embeddings can be checked against something that shares
no code with it: the BERT WordPiece tokenizer from tokenizer.json (no padding,
truncation at sentence_bert_config.json's max_seq_length), the BERT encoder
(post-LayerNorm, exact erf GELU), mean pooling over the tokens, then L2
normalisation.

    embed(model_dir, texts)         -> float32 array, one unit vector a row
    token_counts(model_dir, texts)  -> tokens each text costs, [CLS] and [SEP] included
"""
import functools
import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

_erf = np.vectorize(math.erf, otypes=[np.float64])


@functools.lru_cache(maxsize=None)
def _tokenizer(model_dir: str) -> Tokenizer:
    """tokenizer.json pads and truncates to 128; sentence-transformers does neither here."""
    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.no_padding()
    max_len = json.loads((Path(model_dir) / "sentence_bert_config.json").read_text())["max_seq_length"]
    tok.enable_truncation(max_length=max_len)
    return tok


@functools.lru_cache(maxsize=None)
def _model(model_dir: str) -> tuple[dict, dict]:
    """(config.json, weights by name without any `bert.` prefix)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    weights = {k.removeprefix("bert."): v for k, v in load_file(str(Path(model_dir) / "model.safetensors")).items()}
    return config, weights


def _token_ids(model_dir: str, texts: list[str]) -> list[list[int]]:
    return [enc.ids for enc in _tokenizer(str(model_dir)).encode_batch(list(texts))]


def token_counts(model_dir, texts: list[str]) -> list[int]:
    """How many tokens the model sees for each text, [CLS] and [SEP] included."""
    return [len(ids) for ids in _token_ids(str(model_dir), texts)]


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + np.float32(eps)) * weight + bias).astype(np.float32)


def _dense(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    """A torch Linear: weight is (out, in)."""
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU BERT's `gelu` means: 0.5 x (1 + erf(x / sqrt 2))."""
    return (0.5 * x * (1.0 + _erf(x.astype(np.float64) / math.sqrt(2.0)))).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _attention(h: np.ndarray, w: dict, prefix: str, heads: int) -> np.ndarray:
    seq, hidden = h.shape
    d = hidden // heads

    def split(t: np.ndarray) -> np.ndarray:  # (seq, hidden) -> (heads, seq, d)
        return t.reshape(seq, heads, d).transpose(1, 0, 2)

    q = split(_dense(h, w, f"{prefix}.self.query"))
    k = split(_dense(h, w, f"{prefix}.self.key"))
    v = split(_dense(h, w, f"{prefix}.self.value"))
    probs = _softmax(q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(d)))
    return (probs @ v).transpose(1, 0, 2).reshape(seq, hidden)


def _encode(ids: list[int], config: dict, w: dict) -> np.ndarray:
    """The last hidden state, (tokens, hidden), of one unpadded sequence."""
    eps = config["layer_norm_eps"]
    h = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][: len(ids)]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        a = _dense(_attention(h, w, f"{p}.attention", config["num_attention_heads"]), w, f"{p}.attention.output.dense")
        h = _layer_norm(a + h, w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"], eps)
        f = _dense(_gelu(_dense(h, w, f"{p}.intermediate.dense")), w, f"{p}.output.dense")
        h = _layer_norm(f + h, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], eps)
    return h


def embed(model_dir, texts: list[str]) -> np.ndarray:
    """One L2-normalised sentence embedding a row, float32, (len(texts), hidden)."""
    config, w = _model(str(model_dir))
    rows = []
    for ids in _token_ids(str(model_dir), texts):
        pooled = _encode(ids, config, w).mean(axis=0)
        rows.append(pooled / max(np.linalg.norm(pooled), 1e-12))
    return np.stack(rows).astype(np.float32)


if __name__ == "__main__":
    import sys

    model_dir, *sentences = sys.argv[1:]
    vectors = embed(model_dir, sentences)
    for text, n, v in zip(sentences, token_counts(model_dir, sentences), vectors):
        print(f"{n:4d} tokens  [{', '.join(f'{x:+.6f}' for x in v[:5])}, ...]  {text!r}")
    print("cosine matrix:")
    print(np.round(vectors @ vectors.T, 4))
