"""A real OAuth authorization server for the SDK suites: node `oidc-provider` (tests/oauth-as/start-op.mjs).

The suites run llamagate with authentication on, exactly as a deployment would, and the SDKs send
client-credentials tokens from this server as their `api_key` (`Authorization: Bearer <token>`).
"""
import json
import os
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]

# Clients the suite uses (start-op.mjs gives client `<name>-client` the secret `<name>-secret`).
# `sdk-client` may use every served model and the safety shields; `noscope-client` is authenticated
# but may use none of them (for the 403 tests).
POLICY = {
    "sdk-client": {"tier": "premium", "scope": "model_smollm2_135m model_safety"},
    "noscope-client": {"tier": "free", "scope": "model_llama_3_2_1b"},
}


def start(port: int, resource: str, log_path: Path) -> subprocess.Popen:
    """Starts start-op.mjs on 127.0.0.1:`port` issuing tokens for `resource`; waits for discovery."""
    directory = ROOT / "tests" / "oauth-as"
    if not (directory / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(f"oidc-provider is not installed in {directory}: run scripts/setup-sdk.sh")
    env = dict(os.environ, OP_HOST="127.0.0.1", OP_PORT=str(port), RS_URL=resource,
               OP_POLICY=json.dumps(POLICY), AT_TTL="3600")
    log = open(log_path, "wb")
    proc = subprocess.Popen(["node", "start-op.mjs"], cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120  # node starts slowly on a loaded 2-core machine
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the authorization server exited: {log_path.read_text()}")
        try:
            if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the authorization server did not answer discovery in 30 s")


def client_credentials_token(issuer: str, resource: str, client: str) -> str:
    """A token for `client` with every scope its policy allows."""
    secret = client.removesuffix("-client") + "-secret"
    reply = httpx.post(
        f"{issuer}/token",
        auth=(client, secret),
        data={"grant_type": "client_credentials", "resource": resource, "scope": POLICY[client]["scope"]},
    )
    reply.raise_for_status()
    return reply.json()["access_token"]
