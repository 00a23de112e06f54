"""What authentication costs the running server: resident memory and per-request latency, auth off vs on.

Usage: .venv/bin/python benches/auth_overhead.py [--binary target/release/llamagate] [--requests 100]

For each mode the same server (default model, one thread) starts fresh; auth "on" validates RS256
client-credentials tokens from a real oidc-provider (tests/oauth-as/start-op.mjs). Then:
  1. `--requests` requests (every tenth a 1-token chat completion, the rest GET /v1/models), after
     which VmRSS and VmHWM are read from /proc/<pid>/status;
  2. 300 sequential GET /v1/models over one keep-alive connection: median and p90 latency.
The difference between the modes is what the auth layer adds (JWT validation, the JWKS cache, the
introspection and DPoP caches allocated at start, the authorization-server HTTP client).
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sdk" / "python"))
import authorization_server  # noqa: E402

MODEL_ID = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def run(binary: str, model: str, auth: bool, requests: int, workdir: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers, auth_server = {}, None
    oauth = "oauth_config:\n  enable_auth: false\n"
    if auth:
        as_port = free_port()
        issuer = f"http://127.0.0.1:{as_port}"
        auth_server = authorization_server.start(as_port, url, workdir / "as.log")
        oauth = f"oauth_config:\n  auth_server_uri: {issuer}\n  stack_uri: {url}\n"
    config = workdir / f"stack-{auth}.yaml"
    config.write_text(
        f"server:\n  host: 127.0.0.1\n  port: {port}\nmodels:\n  - id: {MODEL_ID}\n    source: {model}\n{oauth}"
    )
    env = dict(os.environ, RUST_LOG="warn")
    server = subprocess.Popen([binary, "--threads", "1", "serve", "--config", str(config)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not _healthy(url):
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"llamagate did not start (exit {server.poll()})")
            time.sleep(0.1)
        if auth:
            token = authorization_server.client_credentials_token(issuer, url, "sdk-client")
            headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            for i in range(requests):
                if i % 10 == 9:
                    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
                    reply = client.post("/v1/chat/completions", json=body)
                else:
                    reply = client.get("/v1/models")
                reply.raise_for_status()
            rss, hwm = status_kb(server.pid, "VmRSS"), status_kb(server.pid, "VmHWM")
            latencies = []
            for _ in range(300):
                start = time.perf_counter()
                client.get("/v1/models").raise_for_status()
                latencies.append((time.perf_counter() - start) * 1e6)
        latencies.sort()
        return {"rss_kb": rss, "hwm_kb": hwm, "p50_us": statistics.median(latencies),
                "p90_us": latencies[int(len(latencies) * 0.9)]}
    finally:
        server.terminate()
        server.wait(timeout=30)
        if auth_server:
            auth_server.terminate()
            auth_server.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.environ.get("LLAMAGATE_BIN", str(ROOT / "target/release/llamagate")))
    parser.add_argument("--model", default=str(ROOT / "models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="llamagate-auth-bench-"))
    print("| auth | VmRSS after requests | VmHWM | GET /v1/models p50 | p90 |")
    print("|---|---|---|---|---|")
    results = {}
    for auth in (False, True):
        r = results[auth] = run(args.binary, args.model, auth, args.requests, workdir)
        print(f"| {'on' if auth else 'off'} | {r['rss_kb'] / 1024:.1f} MiB | {r['hwm_kb'] / 1024:.1f} MiB | "
              f"{r['p50_us']:.0f} µs | {r['p90_us']:.0f} µs |")
    on, off = results[True], results[False]
    print(f"\nauth adds {(on['rss_kb'] - off['rss_kb']) / 1024:+.1f} MiB resident, "
          f"{on['p50_us'] - off['p50_us']:+.0f} µs median per request")


if __name__ == "__main__":
    main()
