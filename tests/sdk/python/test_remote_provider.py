"""The official OpenAI Python SDK through llamagate to a remote provider: llama.cpp's real `llama-server` on
the default model (built by models/tools/build.sh), registered with a Llama Stack run-config, behind OAuth.

Self-contained: this module starts its own llama-server and `llamagate serve --dev` (its own token issuer), so it
needs neither the session's authorization server nor its server.
"""
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import ROOT, _free_port

UPSTREAM_KEY = "sk-upstream-sdk-test-5d3a"
REMOTE_MODEL = "remote/smollm2"
SCOPE = "model_remote_smollm"


def _wait_healthy(url: str, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become healthy: {log.read_text()}")


@pytest.fixture(scope="module")
def remote_stack():
    """(llamagate URL, token, work dir) with llama-server behind it; both stopped at the end."""
    llama_server = Path(os.environ.get("LLAMA_SERVER_BIN", ROOT / ".bench" / "llamacpp-min" / "bin" / "llama-server"))
    assert llama_server.is_file(), f"no llama-server at {llama_server}: run models/tools/build.sh"
    binary = os.environ.get("LLAMAGATE_BIN", str(ROOT / "target" / "debug" / "llamagate"))
    model = os.environ.get("LLAMAGATE_DEFAULT_MODEL", str(ROOT / "models" / "cache" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    work = Path(tempfile.mkdtemp(prefix="llamagate-remote-sdk-"))
    upstream_port = _free_port()
    upstream_log = work / "llama-server.log"
    upstream = subprocess.Popen(
        [str(llama_server), "-m", model, "-t", "1", "-c", "2048", "-np", "2", "--host", "127.0.0.1",
         "--port", str(upstream_port), "--api-key", UPSTREAM_KEY, "--no-webui", "--no-warmup"],
        stdout=subprocess.DEVNULL, stderr=open(upstream_log, "wb"),
    )
    gate = None
    try:
        _wait_healthy(f"http://127.0.0.1:{upstream_port}/health", upstream, "llama-server", upstream_log)
        (work / "stack.yaml").write_text(
            f"""version: 2
image_name: sdk-remote
server:
  host: 127.0.0.1
  port: 0
providers:
  inference:
    - provider_id: llamacpp
      provider_type: remote::llama-cpp-server
      config:
        base_url: http://127.0.0.1:{upstream_port}/v1
        api_key: ${{env.LLAMACPP_API_KEY:=}}
registered_resources:
  models:
    - model_id: {REMOTE_MODEL}
      provider_id: llamacpp
      provider_model_id: smollm2
      required_scope: {SCOPE}
oauth_config:
  enable_auth: false
"""
        )
        gate_log = work / "gate.log"
        env = {**os.environ, "LLAMACPP_API_KEY": UPSTREAM_KEY, "RUST_LOG": "info"}
        env.pop("LLAMAGATE_DEV_KEY_FILE", None)
        gate = subprocess.Popen(
            [binary, "--threads", "1", "serve", "--config", "stack.yaml", "--dev", "--port", "0"],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=open(gate_log, "wb"),
        )
        line = gate.stdout.readline().decode()
        assert line.startswith("llamagate listening on "), f"{line!r}: {gate_log.read_text()}"
        url = line.strip().removeprefix("llamagate listening on ")
        token = subprocess.run(
            [binary, "token", "--config", "stack.yaml", "--issuer", url, "--scope", SCOPE, "--sub", "sdk-user"],
            cwd=work, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()
        yield url, token, work
    finally:
        for proc in (gate, upstream):
            if proc is not None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def client(remote_stack):
    url, token, _ = remote_stack
    return openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=120)


def test_the_remote_model_is_listed_with_its_provider(client):
    models = {m.id: m for m in client.models.list()}
    assert REMOTE_MODEL in models
    assert models[REMOTE_MODEL].model_extra["custom_metadata"]["provider_id"] == "llamacpp"


def test_chat_and_stream_through_the_gate(client):
    messages = [{"role": "user", "content": "Name three primary colors."}]
    reply = client.chat.completions.create(model=REMOTE_MODEL, messages=messages, max_tokens=12, temperature=0)
    assert reply.object == "chat.completion"
    assert reply.model == REMOTE_MODEL
    assert reply.choices[0].message.content
    # The upstream's count (SmolLM2's template adds a system turn), below the gate's byte estimate
    # (role + content + 8 per message + 8: docs/providers.md).
    estimate = len("user") + len(messages[0]["content"]) + 16
    assert 0 < reply.usage.prompt_tokens < estimate, "the upstream's count, not the estimate"
    streamed, usage = "", None
    for chunk in client.chat.completions.create(
        model=REMOTE_MODEL, messages=messages, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices:
            streamed += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    # Greedy decoding upstream: the stream is the same text.
    assert streamed == reply.choices[0].message.content
    assert usage.prompt_tokens == reply.usage.prompt_tokens


def test_completions_through_the_gate(client):
    out = client.completions.create(model=REMOTE_MODEL, prompt="One, two, three,", max_tokens=6, temperature=0)
    assert out.object == "text_completion"
    assert out.choices[0].text


def test_a_token_without_the_scope_is_refused(remote_stack):
    url, _, work = remote_stack
    binary = os.environ.get("LLAMAGATE_BIN", str(ROOT / "target" / "debug" / "llamagate"))
    other = subprocess.run(
        [binary, "token", "--config", "stack.yaml", "--issuer", url, "--scope", "model_other", "--sub", "stranger"],
        cwd=work, check=True, capture_output=True, text=True,
    ).stdout.strip()
    stranger = openai.OpenAI(base_url=f"{url}/v1", api_key=other, max_retries=0, timeout=60)
    with pytest.raises(openai.PermissionDeniedError):
        stranger.chat.completions.create(model=REMOTE_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)


def test_the_upstream_key_is_in_no_log(remote_stack, client):
    client.chat.completions.create(model=REMOTE_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    _, _, work = remote_stack
    for path in (work / "gate.log", work / ".llamagate" / "audit.log"):
        assert path.is_file(), path
        assert UPSTREAM_KEY not in path.read_text(), path
