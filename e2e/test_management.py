"""The management plane through the real binary: `greenthread plan/apply`
on a GitOps folder, API keys scoping what the `openai` SDK sees and calls,
revocation taking effect at once."""
import os
import subprocess
from pathlib import Path

import openai
import pytest

from conftest import DEMO_FILE, DEMO_MODEL, create_key, graphql


def gitops(server, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GREENTHREAD_URL": server.base, "GREENTHREAD_API_KEY": server.admin}
    return subprocess.run([os.environ["GREENTHREAD_BIN"], *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("gitops")
    model = Path(os.environ["GREENTHREAD_MODELS"]) / DEMO_FILE
    (d / "projects.yaml").write_text("projects:\n  - name: docs-team\n    description: The docs team\n")
    # A path relative to the folder: the CLI resolves it before sending.
    relative = os.path.relpath(model, d)
    (d / "models.yaml").write_text(
        "models:\n"
        "  - name: team-coder\n"
        "    project: docs-team\n"
        f"    artifact: {relative}\n"
        "    context_length: 1024\n"
        "    idle_timeout: 2m\n"
    )
    return d


def test_plan_apply_plan_with_exit_codes(server, folder):
    planned = gitops(server, "plan", "-f", str(folder))
    assert planned.returncode == 2, planned.stderr + planned.stdout
    assert "+ project/docs-team" in planned.stdout and "+ model/team-coder" in planned.stdout
    assert "Plan: 3 to create, 0 to update, 0 to delete." in planned.stdout, planned.stdout

    applied = gitops(server, "apply", "-f", str(folder))
    assert applied.returncode == 0, applied.stderr + applied.stdout
    assert "Applied 3 changes." in applied.stdout

    again = gitops(server, "plan", "-f", str(folder))
    assert again.returncode == 0, again.stderr + again.stdout
    assert "No changes" in again.stdout


def test_a_bad_folder_is_an_error_naming_the_key_and_line(server, tmp_path):
    (tmp_path / "bad.yaml").write_text("models:\n  - name: x\n    artefact: /m.gguf\n")
    result = gitops(server, "plan", "-f", str(tmp_path))
    assert result.returncode == 1
    assert "artefact" in result.stderr and "line 3" in result.stderr, result.stderr


def test_keys_scope_models_to_their_project_and_revocation_is_immediate(server, folder):
    if gitops(server, "apply", "-f", str(folder)).returncode != 0:
        pytest.fail("the folder did not apply")
    team = create_key(server.base, server.admin, "docs-team", ["inference"], name="team")
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key=team["secret"], max_retries=0, timeout=120)
    assert [m.id for m in client.models.list()] == ["team-coder"]
    reply = client.chat.completions.create(
        model="team-coder", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
    )
    assert reply.usage.completion_tokens > 0 and reply.choices[0].message.content

    # Neither project sees the other's model.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=DEMO_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    default = openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)
    assert "team-coder" not in [m.id for m in default.models.list()]
    with pytest.raises(openai.NotFoundError):
        default.chat.completions.create(model="team-coder", messages=[{"role": "user", "content": "hi"}], max_tokens=2)

    graphql(
        server.base,
        server.admin,
        "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { userErrors { message } } }",
        {"i": {"id": team["id"]}},
    )
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.base}/v1", api_key="gt_forged.token.value", max_retries=0).models.list()
