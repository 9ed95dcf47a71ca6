"""A small OpenAI-compatible server on PyTorch and CUDA, for the GPU check:
an external engine whose device memory is real and whose answers depend on
every byte of it, so a checkpoint that lost or moved a byte gives another
answer.

It fills `--gib` GiB of device memory with seeded random weights, answers
`GET /health` once they are there, and `POST /v1/completions` and
`/v1/chat/completions` with a few "tokens" computed from the weights: each
token is a checksum of a matrix-vector product over a slice of them, so
the answer needs the GPU and every slice.

    python3 torch_engine.py --host 127.0.0.1 --port 8000 --gib 4 --seed 1
"""
import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
         "kilo", "lima", "mike", "november", "oscar", "papa"]
CHUNK = 1 << 28  # elements per slice (512 MiB in fp16)


def load(gib: float, seed: int) -> list:
    generator = torch.Generator(device="cuda").manual_seed(seed)
    total = int(gib * (1 << 30) / 2)
    slices = []
    while total > 0:
        n = min(CHUNK, total)
        slices.append(torch.randn(n, device="cuda", dtype=torch.float16, generator=generator))
        total -= n
    torch.cuda.synchronize()
    return slices


def answer(slices: list, prompt: str, tokens: int) -> list[str]:
    """`tokens` words, each from every slice's contribution for this prompt."""
    seed = sum(prompt.encode()) % 9973
    out = []
    with torch.no_grad():
        for step in range(tokens):
            acc = 0.0
            for s in slices:
                m = s[: (s.numel() // 4096) * 4096].view(-1, 4096)
                v = torch.full((4096,), ((seed + step) % 17 + 1) / 17, device="cuda", dtype=torch.float16)
                acc += float((m @ v).float().abs().sum().item())
            out.append(WORDS[int(acc * 1000) % len(WORDS)])
    return out


class Handler(BaseHTTPRequestHandler):
    slices: list = []
    name = "torch"

    def log_message(self, *args):
        pass

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        tokens = int(body.get("max_tokens") or 4)
        if self.path == "/v1/completions":
            prompt = str(body.get("prompt", ""))
        elif self.path == "/v1/chat/completions":
            prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        else:
            return self.reply(404, {"error": {"message": "not found"}})
        words = answer(self.slices, prompt, tokens)
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(words),
                 "total_tokens": len(prompt.split()) + len(words)}
        text = " ".join(words)
        if self.path == "/v1/completions":
            choice = {"index": 0, "text": text, "finish_reason": "length"}
            kind = "text_completion"
        else:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            kind = "chat.completion"
        self.reply(200, {"id": "x", "object": kind, "created": int(time.time()), "model": self.name,
                         "choices": [choice], "usage": usage})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="torch")
    args = parser.parse_args()
    Handler.slices = load(args.gib, args.seed)
    Handler.name = args.name
    print(f"loaded {args.gib} GiB of weights on {torch.cuda.get_device_name()}", flush=True)
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
