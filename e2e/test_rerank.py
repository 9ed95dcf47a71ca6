"""`POST /v1/rerank` and `/v1/score` served by the real all-MiniLM-L6-v2,
called through LiteLLM's `rerank` (its Cohere and hosted-vLLM providers,
as their users call them) and the official openai SDK's raw requests."""
import os

import openai
import pytest

from conftest import DEMO_MODEL, EMBED_MODEL

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

QUERY = "How do I bake bread at home?"
RELEVANT = "Mix flour, water, yeast and salt, let the dough rise, then bake it in a hot oven until golden."
DOCUMENTS = [
    "The Eiffel Tower is in Paris and was finished in 1889.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "A goalkeeper may handle the ball inside the penalty area.",
    "The stock market fell sharply on Tuesday after the announcement.",
    RELEVANT,
    "Jupiter is the largest planet in the solar system.",
    "Python lists keep their items in insertion order.",
    "The violin has four strings tuned in fifths.",
    "Mount Everest is the highest mountain above sea level.",
    "Tax returns are due in April in the United States.",
]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)


def test_litellm_cohere_rerank_puts_the_relevant_document_first(server):
    import litellm

    ranked = litellm.rerank(
        model=f"cohere/{EMBED_MODEL}", query=QUERY, documents=DOCUMENTS, top_n=3,
        api_base=server.base, api_key=server.api_key,
    )
    assert [r["index"] for r in ranked.results][0] == DOCUMENTS.index(RELEVANT), ranked.results
    assert len(ranked.results) == 3
    scores = [r["relevance_score"] for r in ranked.results]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[1] + 0.1, scores


def test_litellm_hosted_vllm_rerank_returns_documents(server):
    import litellm

    ranked = litellm.rerank(
        model=f"hosted_vllm/{EMBED_MODEL}", query=QUERY, documents=DOCUMENTS,
        api_base=f"{server.base}/v1", api_key=server.api_key,
    )
    best = ranked.results[0]
    assert best["index"] == DOCUMENTS.index(RELEVANT)
    assert best["document"]["text"] == RELEVANT
    assert len(ranked.results) == len(DOCUMENTS)


def test_score_agrees_with_rerank(client):
    import httpx

    scored = client.post("/score", cast_to=httpx.Response,
                         body={"model": EMBED_MODEL, "text_1": QUERY, "text_2": DOCUMENTS}).json()
    reranked = client.post("/rerank", cast_to=httpx.Response,
                           body={"model": EMBED_MODEL, "query": QUERY, "documents": DOCUMENTS}).json()
    by_index = {r["index"]: r["relevance_score"] for r in reranked["results"]}
    assert [d["index"] for d in scored["data"]] == list(range(len(DOCUMENTS)))
    for d in scored["data"]:
        assert abs(d["score"] - by_index[d["index"]]) < 1e-5
    assert reranked["usage"]["total_tokens"] > len(DOCUMENTS) * 5


def test_a_chat_model_refuses_to_rerank_and_bad_bodies_name_their_field(client):
    import httpx

    with pytest.raises(openai.BadRequestError) as err:
        client.post("/rerank", cast_to=httpx.Response, body={"model": DEMO_MODEL, "query": "q", "documents": ["a"]})
    assert err.value.param == "model"
    assert "served by embedding and reranker models" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.post("/rerank", cast_to=httpx.Response, body={"model": EMBED_MODEL, "query": "q", "documents": []})
    assert err.value.param == "documents"
