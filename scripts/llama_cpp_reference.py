#!/usr/bin/env python3
"""Reference answers from llama.cpp (through llama-cpp-python) for GreenThread's tests and benchmarks.

Reads one JSON request on stdin and writes one JSON answer on stdout:
  {"op": "tokenize", "model": PATH, "texts": [...], "special": B} -> {"tokens": [[id, ...], ...]}
  {"op": "logits",   "model": PATH, "prompts": [[id, ...], ...]} -> {"logits": [[f32 x vocab], ...]}  (last position)
  {"op": "greedy",   "model": PATH, "prompts": [[...]], "n": N}  -> {"tokens": [[id, ...], ...]}
  {"op": "bench",    "model": PATH, "prompt": [...], "n": N, "threads": T, "repeats": R}
        -> {"prefill_tok_s": [...], "decode_tok_s": [...]}
"""
import json
import sys
import time

import numpy as np
from llama_cpp import Llama


def load(path, n_ctx=1024, threads=None, logits_all=False, vocab_only=False):
    # f32 KV cache and no flash attention: llama.cpp's exact path, so that
    # differences from GreenThread are differences of the engines, not of
    # llama.cpp's f16 cache rounding.
    kwargs = dict(
        model_path=path,
        n_ctx=n_ctx,
        logits_all=logits_all,
        vocab_only=vocab_only,
        verbose=False,
        type_k=0,
        type_v=0,
        flash_attn=False,
    )
    if threads:
        kwargs.update(n_threads=threads, n_threads_batch=threads)
    return Llama(**kwargs)


def tokenize(req):
    m = load(req["model"], vocab_only=True)
    special = req.get("special", True)
    return {"tokens": [m.tokenize(t.encode(), add_bos=True, special=special) for t in req["texts"]]}


def last_logits(m, prompt):
    m.reset()
    m.eval(prompt)
    return np.asarray(m.scores[m.n_tokens - 1], dtype=np.float32)


def last_token_logits(m):
    """Logits of the last evaluated token, without keeping every position's."""
    return np.ctypeslib.as_array(m._ctx.get_logits(), shape=(m.n_vocab(),))


def logits(req):
    m = load(req["model"], n_ctx=req.get("n_ctx", 512), threads=req.get("threads"), logits_all=True)
    return {"logits": [last_logits(m, p).tolist() for p in req["prompts"]]}


def greedy(req):
    m = load(req["model"], n_ctx=req.get("n_ctx", 512), threads=req.get("threads"), logits_all=True)
    out = []
    for prompt in req["prompts"]:
        m.reset()
        m.eval(prompt)
        tokens = []
        for _ in range(req["n"]):
            t = int(np.argmax(m.scores[m.n_tokens - 1]))
            tokens.append(t)
            if t == m.token_eos():
                break
            m.eval([t])
        out.append(tokens)
    return {"tokens": out}


def bench(req):
    prompt, n, threads = req["prompt"], req["n"], req["threads"]
    m = load(req["model"], n_ctx=len(prompt) + n + 8, threads=threads)
    prefill, decode = [], []
    for _ in range(req.get("repeats", 3)):
        m.reset()
        t0 = time.perf_counter()
        m.eval(prompt)
        t1 = time.perf_counter()
        tok = int(np.argmax(last_token_logits(m)))
        for _ in range(n):
            m.eval([tok])
            tok = int(np.argmax(last_token_logits(m)))
        t2 = time.perf_counter()
        prefill.append(len(prompt) / (t1 - t0))
        decode.append(n / (t2 - t1))
    return {"prefill_tok_s": prefill, "decode_tok_s": decode}


def main():
    req = json.load(sys.stdin)
    op = {"tokenize": tokenize, "logits": logits, "greedy": greedy, "bench": bench}[req["op"]]
    json.dump(op(req), sys.stdout)


if __name__ == "__main__":
    main()
