"""Speech recognition with the official openai SDK against the real binary
serving the real Whisper base: sentences spoken by espeak-ng (Debian's,
fetched by scripts/espeak-ng.sh) transcribed with a low word error rate, in
every response format and streamed; the model sleeping and waking; and
clear 400s for bad audio, empty files, unknown formats and a chat model
asked to transcribe."""
import os
import re
import secrets
import signal
import subprocess
import time
import wave
from pathlib import Path

import openai
import pytest

from conftest import OUT, Server, create_key, free_port, graphql, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
ASR = "whisper-base"
CHAT = "gemma"
SENTENCES = [
    "The weather today is sunny and warm, so we will walk to the park after lunch.",
    "Please send the report to my office before five o'clock on Friday.",
]
NUMBERS = {"five": "5", "six": "6", "nine": "9"}


def words(text: str) -> list[str]:
    """Lowercase words without punctuation, numbers as digits (Whisper writes either)."""
    return [NUMBERS.get(w, w) for w in re.findall(r"[a-z0-9']+", text.lower().replace("o'clock", "oclock"))]


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    # Levenshtein distance over words.
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)] / len(ref)


def test_word_error_rate_counts_substitutions_insertions_and_deletions():
    assert word_error_rate("the cat sat", "the cat sat") == 0
    assert word_error_rate("the cat sat", "a cat sat down") == pytest.approx(2 / 3)
    assert word_error_rate("at five o'clock", "At 5 o'clock.") == 0


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> list[Path]:
    """Each sentence spoken by espeak-ng into a 22.05 kHz WAV."""
    espeak = subprocess.run(["bash", str(ROOT / "scripts/espeak-ng.sh")], capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path_factory.mktemp("spoken")
    paths = []
    for i, sentence in enumerate(SENTENCES):
        path = out / f"sentence-{i}.wav"
        subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(path), sentence], check=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    binary = os.environ["GREENTHREAD_BIN"]
    models = Path(os.environ["GREENTHREAD_MODELS"])
    whisper = models / "whisper-base"
    assert whisper.is_dir(), f"{whisper} is missing: scripts/fetch_model.py whisper-base"
    work = tmp_path_factory.mktemp("speech")
    config = work / "config.yaml"
    config.write_text(
        "models:\n"
        f"  - name: {ASR}\n    artifact: {whisper}\n    kind: asr\n"
        f"  - name: {CHAT}\n    artifact: {models / 'gemma-3-270m-q4_k_m.gguf'}\n    context_length: 512\n"
    )
    OUT.mkdir(exist_ok=True)
    log = OUT / "speech-server.log"
    port = free_port()
    admin = "gt-e2e-admin-" + secrets.token_hex(16)
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [binary, "serve", "--config", str(config), "--data-dir", str(work / "data"), "--listen", f"127.0.0.1:{port}"],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "GREENTHREAD_ADMIN_TOKEN": admin},
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log, admin)
    try:
        wait_healthy(server.base, proc, log)
        server.api_key = create_key(server.base, admin, "default", ["inference"])["secret"]
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)


@pytest.fixture(scope="module")
def client(speech):
    return openai.OpenAI(base_url=f"{speech.base}/v1", api_key=speech.api_key, max_retries=0, timeout=300)


def test_spoken_sentences_are_transcribed_with_a_low_word_error_rate(client, spoken):
    for sentence, path in zip(SENTENCES, spoken):
        with open(path, "rb") as f:
            heard = client.audio.transcriptions.create(model=ASR, file=f)
        wer = word_error_rate(sentence, heard.text)
        assert wer < 0.2, f"{sentence!r} heard as {heard.text!r}: WER {wer:.2f}"


def test_verbose_json_has_timed_segments_and_subtitles_have_cues(client, spoken):
    with open(spoken[0], "rb") as f:
        verbose = client.audio.transcriptions.create(model=ASR, file=f, response_format="verbose_json", language="en")
    assert verbose.language == "en" and verbose.task == "transcribe"
    with wave.open(str(spoken[0])) as w:
        seconds = w.getnframes() / w.getframerate()
    assert verbose.duration == pytest.approx(seconds, abs=0.05)
    assert verbose.segments, verbose
    for segment in verbose.segments:
        assert 0 <= segment.start < segment.end <= seconds + 0.5, segment
    assert word_error_rate(SENTENCES[0], " ".join(s.text for s in verbose.segments)) < 0.2
    with open(spoken[0], "rb") as f:
        srt = client.audio.transcriptions.create(model=ASR, file=f, response_format="srt")
    assert re.match(r"1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n\S", srt), srt
    with open(spoken[0], "rb") as f:
        vtt = client.audio.transcriptions.create(model=ASR, file=f, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:"), vtt
    with open(spoken[0], "rb") as f:
        text = client.audio.transcriptions.create(model=ASR, file=f, response_format="text")
    assert word_error_rate(SENTENCES[0], text) < 0.2


def test_a_stream_sends_deltas_then_the_whole_text(client, spoken):
    with open(spoken[1], "rb") as f:
        events = list(client.audio.transcriptions.create(model=ASR, file=f, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert deltas and len(done) == 1, events
    assert "".join(deltas).strip() == done[0].text
    assert word_error_rate(SENTENCES[1], done[0].text) < 0.2


def test_translation_into_english_keeps_english_speech(client, spoken):
    with open(spoken[0], "rb") as f:
        translated = client.audio.translations.create(model=ASR, file=f)
    assert word_error_rate(SENTENCES[0], translated.text) < 0.3, translated.text


def test_the_speech_model_sleeps_and_wakes_to_the_same_words(speech, client, spoken):
    with open(spoken[0], "rb") as f:
        before = client.audio.transcriptions.create(model=ASR, file=f).text
    data = graphql(speech.base, speech.admin,
                   "mutation($i: ModelActionInput!) { sleepModel(input: $i) { userErrors { message } } }", {"i": {"name": ASR}})
    assert data["sleepModel"]["userErrors"] == [], data
    deadline = time.monotonic() + 30
    while True:
        nodes = graphql(speech.base, speech.admin, "{ models { nodes { name kind runtime { state } } } }")["models"]["nodes"]
        kind, state = {m["name"]: (m["kind"], m["runtime"]["state"]) for m in nodes}[ASR]
        if state == "sleeping" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (kind, state) == ("ASR", "sleeping")
    with open(spoken[0], "rb") as f:
        after = client.audio.transcriptions.create(model=ASR, file=f).text
    assert after == before


def test_bad_requests_get_clear_400s(client, spoken):
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model=ASR, file=("clip.wav", b"this is not audio", "audio/wav"))
    assert err.value.param == "file" and "not audio" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model=ASR, file=("clip.wav", b"", "audio/wav"))
    assert err.value.param == "file" and "empty" in err.value.message
    with open(spoken[0], "rb") as f:
        with pytest.raises(openai.BadRequestError) as err:
            client.audio.transcriptions.create(model=CHAT, file=f)
    assert err.value.param == "model" and "served by asr models" in err.value.message
    with open(spoken[0], "rb") as f:
        with pytest.raises(openai.BadRequestError) as err:
            client.audio.transcriptions.create(model=ASR, file=f, response_format="mp3")
    assert err.value.param == "response_format"
    with open(spoken[0], "rb") as f:
        with pytest.raises(openai.BadRequestError) as err:
            client.audio.transcriptions.create(model=ASR, file=f, language="xx")
    assert err.value.param == "language"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=ASR, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert err.value.param == "model" and "is an asr model" in err.value.message
