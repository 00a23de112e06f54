"""Starts the real `llamagate serve` on the default model for the SDK suites."""
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
MODEL_ID = "smollm2-135m-instruct"
# A second id with a slash, served from the same file: SDKs spell such ids differently in URLs.
SLASH_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def base_url():
    binary = os.environ.get("LLAMAGATE_BIN", str(ROOT / "target" / "debug" / "llamagate"))
    model = os.environ.get("LLAMAGATE_DEFAULT_MODEL", str(ROOT / "models" / "cache" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="llamagate-sdk-")
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
oauth_config:
  enable_auth: false
"""
    )
    log = open(Path(workdir) / "server.log", "wb")
    proc = subprocess.Popen([binary, "--threads", "1", "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llamagate exited with {proc.returncode}: {(Path(workdir) / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("llamagate did not become healthy in 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
