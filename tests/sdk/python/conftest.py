"""Starts the real `llamagate serve` on the default model for the SDK suites, with authentication on.

A real authorization server (node oidc-provider, see authorization_server.py) issues the tokens; the
SDK clients send them as `api_key`. `LLAMA_STACK_CLIENT_API_KEY` is set for the session, so a
`LlamaStackClient` made without an explicit key authenticates too.
"""
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

import authorization_server

ROOT = Path(__file__).resolve().parents[3]
MODEL_ID = "smollm2-135m-instruct"
# A second id with a slash, served from the same file: SDKs spell such ids differently in URLs.
SLASH_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# A Llama Guard shield with the default model standing in as the guard (only S1, S10, S12 in its prompt,
# which keeps scoring quick).
SHIELD_ID = "llama-guard"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def _stack():
    """(server URL, authorization server URL); both run for the whole session."""
    binary = os.environ.get("LLAMAGATE_BIN", str(ROOT / "target" / "debug" / "llamagate"))
    model = os.environ.get("LLAMAGATE_DEFAULT_MODEL", str(ROOT / "models" / "cache" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    workdir = tempfile.mkdtemp(prefix="llamagate-sdk-")
    as_port = _free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    auth_server = authorization_server.start(as_port, url, Path(workdir) / "authorization-server.log")
    config = Path(workdir) / "stack.yaml"
    config.write_text(
        f"""server:
  host: 127.0.0.1
  port: {port}
models:
  - id: {MODEL_ID}
    source: {model}
  - id: {SLASH_MODEL_ID}
    source: {model}
shields:
  - id: {SHIELD_ID}
    model: {MODEL_ID}
    excluded_categories: [S2, S3, S4, S5, S6, S7, S8, S9, S11, S13, S14]
oauth_config:
  auth_server_uri: {issuer}
  stack_uri: {url}
  enable_rate_limiting: false  # SDK compatibility, not limits (crates/server/tests/it/rate_limits*.rs)
  enforce_content_safety: false  # the stand-in guard would check every chat (crates/server/tests/it/content_safety.rs)
  audit:
    path: {Path(workdir) / "audit.log"}
"""
    )
    log = open(Path(workdir) / "server.log", "wb")
    proc = subprocess.Popen([binary, "--threads", "1", "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            auth_server.kill()
            raise RuntimeError(f"llamagate exited with {proc.returncode}: {(Path(workdir) / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        auth_server.kill()
        raise RuntimeError("llamagate did not become healthy in 120 s")
    yield url, issuer
    proc.terminate()
    proc.wait(timeout=30)
    auth_server.terminate()
    auth_server.wait(timeout=30)


@pytest.fixture(scope="session")
def base_url(_stack, access_token):
    return _stack[0]


@pytest.fixture(scope="session")
def access_token(_stack):
    """A client-credentials token from the real authorization server with every served model's
    scope and `model_safety`; also the session's `LLAMA_STACK_CLIENT_API_KEY`."""
    url, issuer = _stack
    token = authorization_server.client_credentials_token(issuer, url, "sdk-client")
    os.environ["LLAMA_STACK_CLIENT_API_KEY"] = token
    return token


@pytest.fixture(scope="session")
def noscope_token(_stack):
    """A valid token from the same authorization server without any served model's scope."""
    url, issuer = _stack
    return authorization_server.client_credentials_token(issuer, url, "noscope-client")
