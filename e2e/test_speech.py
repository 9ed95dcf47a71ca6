"""Speech both ways with the official openai SDK against the real binary
serving the real Whisper base and the real Piper voice "joe": sentences
spoken by espeak-ng (Debian's, fetched by scripts/espeak-ng.sh) transcribed
with a low word error rate, in every response format and streamed; text
synthesized by the voice and transcribed back by Whisper recovering the
words, as a WAV streamed a sentence at a time, as PCM and as FLAC; both
models sleeping and waking; and clear 400s for bad audio, empty files,
unknown formats, an empty input, an unknown voice and a chat model asked
to transcribe or speak; the console's speech and rerank playgrounds in
real headless Chromium; and usage counted in audio seconds, characters and
documents."""
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
TTS = "joe"
EMBED = "minilm"
VOICE = "joe"
SPOKEN_BY_VOICE = "The quick brown fox jumps over the lazy dog. Then it runs back home to sleep."
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
    voice = models / "piper-joe-medium"
    assert voice.is_dir(), f"{voice} is missing: scripts/fetch_model.py piper-joe-medium"
    # The voice's two libraries: ONNX Runtime from its wheel, espeak-ng from Debian's packages.
    onnxruntime = subprocess.run(["bash", str(ROOT / "scripts/onnxruntime.sh")], capture_output=True, text=True, check=True).stdout.strip()
    espeak_env = subprocess.run(["bash", str(ROOT / "scripts/espeak-ng.sh"), "--env"], capture_output=True, text=True, check=True).stdout.split()
    libraries = {"GREENTHREAD_ONNXRUNTIME": onnxruntime, **dict(pair.split("=", 1) for pair in espeak_env)}
    work = tmp_path_factory.mktemp("speech")
    config = work / "config.yaml"
    config.write_text(
        "models:\n"
        f"  - name: {ASR}\n    artifact: {whisper}\n    kind: asr\n"
        f"  - name: {TTS}\n    artifact: {voice}\n    kind: tts\n"
        f"  - name: {EMBED}\n    artifact: {models / 'all-minilm-l6-v2'}\n"
        f"  - name: {CHAT}\n    artifact: {models / 'gemma-3-270m-q4_k_m.gguf'}\n    context_length: 512\n"
    )
    OUT.mkdir(exist_ok=True)
    log = OUT / "speech-server.log"
    port = free_port()
    admin = "gt-e2e-admin-" + secrets.token_hex(16)
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [binary, "serve", "--config", str(config), "--data-dir", str(work / "data"), "--listen", f"127.0.0.1:{port}"],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **libraries, "GREENTHREAD_ADMIN_TOKEN": admin},
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
    assert verbose.language == "english" and verbose.task == "transcribe"
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


def put_to_sleep(speech, name: str) -> str:
    """Puts `name` to sleep; returns its kind once it sleeps."""
    data = graphql(speech.base, speech.admin,
                   "mutation($i: ModelActionInput!) { sleepModel(input: $i) { userErrors { message } } }", {"i": {"name": name}})
    assert data["sleepModel"]["userErrors"] == [], data
    deadline = time.monotonic() + 30
    while True:
        nodes = graphql(speech.base, speech.admin, "{ models { nodes { name kind runtime { state } } } }")["models"]["nodes"]
        kind, state = {m["name"]: (m["kind"], m["runtime"]["state"]) for m in nodes}[name]
        if state == "sleeping" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state == "sleeping"
    return kind


def test_the_speech_model_sleeps_and_wakes_to_the_same_words(speech, client, spoken):
    with open(spoken[0], "rb") as f:
        before = client.audio.transcriptions.create(model=ASR, file=f).text
    assert put_to_sleep(speech, ASR) == "ASR"
    with open(spoken[0], "rb") as f:
        after = client.audio.transcriptions.create(model=ASR, file=f).text
    assert after == before


def wav_seconds(data: bytes) -> float:
    """Seconds of a mono 16-bit WAV stream (its header's sizes say "unknown")."""
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt ", data[:16]
    rate = int.from_bytes(data[24:28], "little")
    assert int.from_bytes(data[22:24], "little") == 1 and int.from_bytes(data[34:36], "little") == 16
    return (len(data) - 44) / 2 / rate


def test_synthesized_speech_is_transcribed_back_to_its_words(client):
    with client.audio.speech.with_streaming_response.create(model=TTS, voice=VOICE, input=SPOKEN_BY_VOICE) as response:
        assert response.headers["content-type"] == "audio/wav"
        chunks = list(response.iter_bytes())
    audio = b"".join(chunks)
    seconds = wav_seconds(audio)
    assert 3 < seconds < 12, seconds
    heard = client.audio.transcriptions.create(model=ASR, file=("spoken.wav", audio, "audio/wav")).text
    wer = word_error_rate(SPOKEN_BY_VOICE, heard)
    assert wer < 0.2, f"{SPOKEN_BY_VOICE!r} heard as {heard!r}: WER {wer:.2f}"


def test_speed_pcm_and_flac(client):
    normal = client.audio.speech.create(model=TTS, voice=VOICE, input="Good morning, everyone.").read()
    fast = client.audio.speech.create(model=TTS, voice=VOICE, input="Good morning, everyone.", speed=2.0).read()
    assert wav_seconds(fast) < 0.7 * wav_seconds(normal), (wav_seconds(fast), wav_seconds(normal))
    # OpenAI's pcm: 16-bit samples at 24 kHz, whatever the voice's own rate (22.05 kHz, 8% apart).
    # The voice draws its durations at random: over three sentences they vary by about 1%.
    paragraph = " ".join(SENTENCES + [SPOKEN_BY_VOICE])
    wav = wav_seconds(client.audio.speech.create(model=TTS, voice=VOICE, input=paragraph).read())
    pcm = client.audio.speech.create(model=TTS, voice=VOICE, input=paragraph, response_format="pcm").read()
    assert abs(len(pcm) / 2 / 24000 - wav) / wav < 0.03, (len(pcm) / 2 / 24000, wav)
    flac = client.audio.speech.create(model=TTS, voice=VOICE, input="Good morning, everyone.", response_format="flac").read()
    assert flac[:4] == b"fLaC"
    heard = client.audio.transcriptions.create(model=ASR, file=("spoken.flac", flac, "audio/flac")).text
    assert word_error_rate("Good morning, everyone.", heard) < 0.34, heard


def test_voices_are_listed_and_the_voice_sleeps_and_wakes(speech, client):
    import httpx
    listed = httpx.get(f"{speech.base}/v1/audio/voices", params={"model": TTS},
                       headers={"Authorization": f"Bearer {speech.api_key}"}).json()
    assert [v["id"] for v in listed["voices"]] == [VOICE] and listed["voices"][0]["language"] == "en_US", listed
    before = client.audio.speech.create(model=TTS, voice=VOICE, input="Hello.").read()
    assert put_to_sleep(speech, TTS) == "TTS"
    after = client.audio.speech.create(model=TTS, voice=VOICE, input="Hello.").read()
    assert abs(wav_seconds(after) - wav_seconds(before)) < 0.3


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


def test_bad_speech_requests_get_clear_400s(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model=TTS, voice=VOICE, input="")
    assert err.value.param == "input" and "empty" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model=TTS, voice="alloy", input="Hello.")
    assert err.value.param == "voice" and VOICE in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model=TTS, voice=VOICE, input="Hello.", response_format="mp3")
    assert err.value.param == "response_format" and "wav" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model=TTS, voice=VOICE, input="Hello.", speed=9)
    assert err.value.param == "speed"
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model=CHAT, voice=VOICE, input="Hello.")
    assert err.value.param == "model" and "served by tts models" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model=TTS, file=("a.wav", b"RIFF", "audio/wav"))
    assert err.value.param == "model" and "is a tts model" in err.value.message


def test_the_console_transcribes_speaks_and_ranks(speech, spoken):
    from playwright.sync_api import expect, sync_playwright
    from console import CHROMIUM_ARGS, chromium_path, go, sign_in
    user = create_key(speech.base, speech.admin, "default", ["read", "inference"], name="console-speech")
    shots = OUT / "console"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        page.goto(speech.base + "/ui/")
        sign_in(page, user["secret"])
        go(page, "Playground")
        # Speech to text: an uploaded file, its transcript and its timed segments.
        expect(page.get_by_label("Speech model")).to_have_value(ASR)
        page.set_input_files("#stt-file", str(spoken[0]))
        transcript = page.locator("[data-transcript]")
        expect(transcript).to_contain_text("park", timeout=120_000)
        assert word_error_rate(SENTENCES[0], transcript.inner_text()) < 0.2
        expect(page.locator("[data-segments] tr").first).to_contain_text(re.compile(r"0:00\.\d – 0:0\d\.\d"))
        # Text to speech: the voice listed, the audio in a player of the right length.
        expect(page.get_by_label("Voice", exact=True)).to_have_value(VOICE, timeout=30_000)
        page.get_by_label("Text", exact=True).fill("Hello from the console.")
        page.get_by_role("button", name="Speak").click()
        player = page.locator("audio[data-speech]")
        expect(player).to_be_attached(timeout=60_000)
        page.wait_for_function("() => { const a = document.querySelector('audio[data-speech]');"
                               " return a && a.duration > 0.8 && a.duration < 5; }", timeout=30_000)
        # Rerank: the relevant document first.
        page.get_by_label("Rerank model").select_option(EMBED)
        page.get_by_label("Query").fill("How do I bake bread?")
        page.get_by_label("Documents, one per line").fill(
            "The stock market fell today.\nKnead the dough, let it rise, then bake it at 220 degrees.\nFootball is popular.")
        page.get_by_role("button", name="Rank").click()
        expect(page.locator("[data-ranked] li").first).to_contain_text("Knead the dough", timeout=60_000)
        expect(page.locator("[data-ranked] li")).to_have_count(3)
        page.screenshot(path=str(shots / "speech-playgrounds.png"), full_page=True)
        browser.close()


def test_the_console_records_from_the_microphone(speech, spoken):
    """Chromium's fake microphone plays a spoken sentence; the console
    records it, decodes its WebM in the browser, and sends a WAV."""
    from playwright.sync_api import expect, sync_playwright
    from console import CHROMIUM_ARGS, chromium_path, go, sign_in
    user = create_key(speech.base, speech.admin, "default", ["read", "inference"], name="console-microphone")
    with wave.open(str(spoken[1])) as w:
        seconds = w.getnframes() / w.getframerate()
    microphone = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={spoken[1]}%noloop"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS + microphone)
        page = browser.new_context().new_page()
        page.goto(speech.base + "/ui/")
        sign_in(page, user["secret"])
        go(page, "Playground")
        expect(page.get_by_label("Speech model")).to_have_value(ASR)
        page.get_by_role("button", name="Record from the microphone").click()
        expect(page.get_by_role("button", name="Stop recording")).to_be_visible(timeout=10_000)
        page.wait_for_timeout(int((seconds + 1.0) * 1000))
        page.get_by_role("button", name="Stop recording").click()
        expect(page.locator("[data-transcript]")).to_contain_text("report", timeout=120_000)
        expect(page.locator("[data-stt-status]")).to_contain_text("of audio")
        browser.close()


def test_usage_counts_audio_seconds_characters_and_documents(speech, client, spoken):
    with open(spoken[1], "rb") as f:
        client.audio.transcriptions.create(model=ASR, file=f)
    client.audio.speech.create(model=TTS, voice=VOICE, input="Twenty characters!!!").read()
    import httpx
    httpx.post(f"{speech.base}/v1/rerank", headers={"Authorization": f"Bearer {speech.api_key}"},
               json={"model": EMBED, "query": "q", "documents": ["a", "b", "c"]}).raise_for_status()
    with wave.open(str(spoken[1])) as w:
        seconds = w.getnframes() / w.getframerate()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    query = ("query($s: DateTime!) { usage(since: $s, bucket: DAY) { model audioSeconds characters documents }"
             " usageRecords(since: $s, limit: 200) { model audioSeconds characters documents } }")
    deadline = time.monotonic() + 20
    while True:
        data = graphql(speech.base, speech.admin, query, {"s": since})
        records = data["usageRecords"]
        if (any(r["characters"] == 20 for r in records) and any(r["documents"] == 3 for r in records)
                and any(abs(r["audioSeconds"] - seconds) < 0.01 for r in records)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert any(r["model"] == TTS and r["characters"] == 20 for r in records), records
    assert any(r["model"] == EMBED and r["documents"] == 3 for r in records), records
    assert any(r["model"] == ASR and abs(r["audioSeconds"] - seconds) < 0.01 for r in records), (seconds, records)
    totals = {p["model"]: p for p in data["usage"]}
    assert totals[ASR]["audioSeconds"] >= seconds and totals[TTS]["characters"] >= 20, totals
