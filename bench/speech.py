"""Speech both ways and reranking, against a peer measured in the same run.

Starts the release `greenthread serve` (open mode, loopback) with Whisper
base, the Piper voice "joe" and all-MiniLM-L6-v2, speaks a paragraph with
espeak-ng, and measures:

- transcription: seconds of processing per second of audio (the real-time
  factor; lower is faster) through `POST /v1/audio/transcriptions`, next to
  faster-whisper (CTranslate2, float32, greedy, the same weights as
  published) on the same cores in process;
- synthesis: seconds of processing per second of speech made through
  `POST /v1/audio/speech` (and the time to its first audio, as it streams),
  next to piper-tts (the voice's own runtime, on the same ONNX Runtime
  version and cores) in process;
- reranking: documents scored per second through `POST /v1/rerank`.

Prints markdown tables. Run through bench/speech.sh.
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid
import wave
from pathlib import Path

SMOKE = bool(os.environ.get("GREENTHREAD_BENCH_SMOKE"))
REPEATS = 1 if SMOKE else 3
PARAGRAPH = ("The weather today is sunny and warm, so we will walk to the park after lunch. "
             "The library opens at nine in the morning and closes at six in the evening. "
             "Please send the report to my office before five o'clock on Friday. "
             "Trains to the city leave every twenty minutes from the second platform.")
DOCUMENTS = [f"Document {i} talks about {t}." for i, t in enumerate(
    ["baking bread", "the stock market", "football", "planets", "violins", "taxes", "mountains", "python lists"] * 8)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def post_audio(base: str, path: Path, model: str) -> dict:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(base + "/v1/audio/transcriptions", data=body,
                                 headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def speak(base: str, text: str) -> tuple[float, float]:
    """Speaks `text` as a streamed WAV; returns the seconds to its first audio and the seconds of speech."""
    req = urllib.request.Request(base + "/v1/audio/speech", headers={"content-type": "application/json"},
                                 data=json.dumps({"model": "joe", "voice": "joe", "input": text}).encode())
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        head = r.read(44 + 2)
        first = time.perf_counter() - started
        rest = r.read()
    rate = int.from_bytes(head[24:28], "little")
    return first, (len(head) + len(rest) - 44) / 2 / rate


def timed(f) -> tuple[float, object]:
    times, result = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    binary, models = os.environ["GREENTHREAD_BIN"], Path(os.environ["GREENTHREAD_MODELS"])
    work = Path(tempfile.mkdtemp(prefix="gt-bench-speech-"))
    clip = work / "paragraph.wav"
    text = PARAGRAPH.split(". ")[0] if SMOKE else PARAGRAPH
    subprocess.run([os.environ["GREENTHREAD_ESPEAK"], "-v", "en-us", "-s", "150", "-w", str(clip), text], check=True)
    with wave.open(str(clip)) as w:
        seconds = w.getnframes() / w.getframerate()
    (work / "config.yaml").write_text(
        f"models:\n  - name: whisper\n    artifact: {models / 'whisper-base'}\n    min_replicas: 1\n"
        f"  - name: embed\n    artifact: {models / 'all-minilm-l6-v2'}\n    min_replicas: 1\n"
        f"  - name: joe\n    artifact: {models / 'piper-joe-medium'}\n    min_replicas: 1\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([binary, "serve", "--open", "--config", str(work / "config.yaml"), "--data-dir",
                             str(work / "data"), "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        post_audio(base, clip, "whisper")  # warm: the model is awake, caches filled
        ours, heard = timed(lambda: post_audio(base, clip, "whisper"))

        from faster_whisper import WhisperModel
        threads = os.cpu_count() or 1
        peer_model = WhisperModel(str(models / "whisper-base-ct2"), device="cpu", compute_type="float32", cpu_threads=threads)

        def peer():
            segments, _ = peer_model.transcribe(str(clip), beam_size=1, temperature=0.0, language="en",
                                                condition_on_previous_text=False, vad_filter=False)
            return " ".join(s.text.strip() for s in segments)
        peer()
        theirs, peer_text = timed(peer)
        print(f"| transcription of {seconds:.1f} s of speech ({threads} cores) | seconds | real-time factor | vs faster-whisper |")
        print("|---|---|---|---|")
        print(f"| GreenThread, Whisper base over HTTP | {ours:.2f} | {ours / seconds:.3f} | {theirs / ours:.2f}× |")
        print(f"| faster-whisper 1.2.1, float32, in process | {theirs:.2f} | {theirs / seconds:.3f} | 1.00× |")
        print()
        print(f"GreenThread heard: {heard['text']!r}  ")
        print(f"faster-whisper heard: {peer_text!r}")
        print()

        speak_text = PARAGRAPH.split(". ")[0] + "." if SMOKE else PARAGRAPH
        speak(base, "Warm up.")
        made, (first_audio, audio_seconds) = timed(lambda: speak(base, speak_text))
        from piper import PiperVoice
        voice_dir = models / "piper-joe-medium"
        peer_voice = PiperVoice.load(voice_dir / "model.onnx", config_path=voice_dir / "config.json")

        def piper_speak() -> float:
            chunks = list(peer_voice.synthesize(speak_text))
            return sum(len(c.audio_int16_bytes) // 2 for c in chunks) / peer_voice.config.sample_rate
        piper_speak()
        piper_made, piper_seconds = timed(piper_speak)
        print(f"| synthesis of {len(speak_text)} characters ({threads} cores) | seconds | speech made | real-time factor | first audio | vs piper |")
        print("|---|---|---|---|---|---|")
        print(f"| GreenThread, Piper joe (medium) over HTTP, WAV streamed | {made:.2f} | {audio_seconds:.1f} s "
              f"| {made / audio_seconds:.3f} | {first_audio:.2f} s | {(piper_made / piper_seconds) / (made / audio_seconds):.2f}× |")
        print(f"| piper-tts 1.8.0, in process | {piper_made:.2f} | {piper_seconds:.1f} s | {piper_made / piper_seconds:.3f} | — | 1.00× |")
        print()

        docs = DOCUMENTS[:8] if SMOKE else DOCUMENTS
        post_json(base, "/v1/rerank", {"model": "embed", "query": "warm up", "documents": docs[:2]})
        rerank, _ = timed(lambda: post_json(base, "/v1/rerank", {"model": "embed", "query": "How do I bake bread?",
                                                                 "documents": docs}))
        print("| rerank (all-MiniLM-L6-v2, cosine) | documents | seconds | documents/s |")
        print("|---|---|---|---|")
        print(f"| one query | {len(docs)} | {rerank:.3f} | {len(docs) / rerank:.0f} |")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
