"""`POST /v1/embeddings` through the official `openai` SDK, served by the real
all-MiniLM-L6-v2 and checked against an independent NumPy reference of it
(e2e/embedding_reference.py)."""
import base64
import os
from pathlib import Path

import numpy as np
import openai
import pytest

import embedding_reference
from conftest import DEMO_MODEL, EMBED_DIR_NAME, EMBED_MODEL

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
DIM = 384


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def reference() -> dict:
    """The reference embeddings and token counts of SENTENCES, computed once."""
    model_dir = Path(os.environ["GREENTHREAD_MODELS"]) / EMBED_DIR_NAME
    return {
        "vectors": embedding_reference.embed(model_dir, SENTENCES),
        "tokens": embedding_reference.token_counts(model_dir, SENTENCES),
    }


@pytest.fixture(scope="module")
def batch(client):
    """SENTENCES embedded in one request, as plain JSON floats."""
    return client.embeddings.create(model=EMBED_MODEL, input=SENTENCES, encoding_format="float")


def vectors(response) -> np.ndarray:
    return np.array([d.embedding for d in response.data], dtype=np.float64)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_a_batch_gives_unit_vectors_matching_the_reference(batch, reference):
    assert batch.object == "list"
    assert batch.model == EMBED_MODEL
    assert [d.index for d in batch.data] == [0, 1, 2]
    assert all(d.object == "embedding" for d in batch.data)
    got = vectors(batch)
    assert got.shape == (3, DIM)
    assert np.linalg.norm(got, axis=1).tolist() == pytest.approx([1.0] * 3, abs=1e-3)
    for text, mine, theirs in zip(SENTENCES, got, reference["vectors"]):
        assert cosine(mine, theirs) > 0.999, text
    # What the model is known for: the two sentences about eating are close, the third is not.
    assert cosine(got[0], got[1]) > 0.6 and cosine(got[0], got[2]) < 0.3


def test_usage_counts_the_tokens_with_cls_and_sep(batch, reference):
    assert batch.usage.prompt_tokens == sum(reference["tokens"])
    assert batch.usage.total_tokens == batch.usage.prompt_tokens


def test_a_single_string_gives_its_batch_embedding(client, batch):
    one = client.embeddings.create(model=EMBED_MODEL, input=SENTENCES[1], encoding_format="float")
    assert [d.index for d in one.data] == [0]
    assert cosine(vectors(one)[0], vectors(batch)[1]) > 0.9999


def test_base64_gives_the_same_floats(client, batch):
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    decoded_by_sdk = client.embeddings.create(model=EMBED_MODEL, input=SENTENCES)
    np.testing.assert_allclose(vectors(decoded_by_sdk), vectors(batch), rtol=0, atol=1e-6)
    # Asked for explicitly, the SDK hands over the base64 strings: little-endian float32.
    raw = client.embeddings.create(model=EMBED_MODEL, input=SENTENCES, encoding_format="base64")
    assert all(isinstance(d.embedding, str) for d in raw.data)
    decoded = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in raw.data])
    np.testing.assert_allclose(decoded, vectors(batch), rtol=0, atol=1e-6)


def test_dimensions_must_be_the_models_own(client, batch):
    full = client.embeddings.create(model=EMBED_MODEL, input=SENTENCES[0], dimensions=DIM, encoding_format="float")
    assert cosine(vectors(full)[0], vectors(batch)[0]) > 0.9999
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=EMBED_MODEL, input=SENTENCES[0], dimensions=100)
    assert err.value.param == "dimensions"


@pytest.mark.parametrize("empty", ["", []], ids=["empty string", "empty list"])
def test_empty_input_is_a_bad_request(client, empty):
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=EMBED_MODEL, input=empty)
    assert err.value.param == "input"


def test_chat_and_embedding_models_refuse_each_others_endpoints(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=DEMO_MODEL, input="hello")
    assert err.value.param == "model"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=EMBED_MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=2)
    assert err.value.param == "model"
