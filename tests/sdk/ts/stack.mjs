// Starts the real llamagate with authentication on, in front of a real authorization server (node
// oidc-provider, tests/oauth-as/start-op.mjs), and fetches client-credentials tokens the SDK sends
// as its apiKey. Same clients and scopes as tests/sdk/python/authorization_server.py.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../../..');
export const MODEL_ID = 'smollm2-135m-instruct';
export const SLASH_MODEL_ID = 'HuggingFaceTB/SmolLM2-135M-Instruct';
// A Llama Guard shield with the default model standing in as the guard (S1, S10, S12 only: a short prompt).
export const SHIELD_ID = 'llama-guard';

// sdk-client may use every served model and the safety shields; noscope-client none of them.
const POLICY = {
  'sdk-client': { tier: 'premium', scope: 'model_smollm2_135m model_safety' },
  'noscope-client': { tier: 'free', scope: 'model_llama_3_2_1b' },
};

const freePort = () =>
  new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });

const waitFor = async (url, what) => {
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not answer ${url}`);
};

const token = async (issuer, resource, client) => {
  const basic = Buffer.from(`${client}:${client.replace(/-client$/, '')}-secret`).toString('base64');
  const reply = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: POLICY[client].scope }),
  });
  const json = await reply.json();
  if (!reply.ok) throw new Error(`token request failed: ${JSON.stringify(json)}`);
  return json.access_token;
};

/** { baseURL, token, noscopeToken, stop } for one llamagate behind one authorization server. */
export async function startStack() {
  const binary = process.env.LLAMAGATE_BIN ?? join(root, 'target/debug/llamagate');
  const model = process.env.LLAMAGATE_DEFAULT_MODEL ?? join(root, 'models/cache/SmolLM2-135M-Instruct.Q4_1.gguf');
  const [port, asPort] = [await freePort(), await freePort()];
  const baseURL = `http://127.0.0.1:${port}`;
  const issuer = `http://127.0.0.1:${asPort}`;
  const env = { ...process.env, OP_HOST: '127.0.0.1', OP_PORT: String(asPort), RS_URL: baseURL,
    OP_POLICY: JSON.stringify(POLICY), AT_TTL: '3600' };
  const authServer = spawn('node', ['start-op.mjs'], { cwd: join(root, 'tests/oauth-as'), env, stdio: 'inherit' });
  await waitFor(`${issuer}/.well-known/openid-configuration`, 'the authorization server');
  const dir = mkdtempSync(join(tmpdir(), 'llamagate-ts-'));
  const config = join(dir, 'stack.yaml');
  writeFileSync(
    config,
    `server:\n  host: 127.0.0.1\n  port: ${port}\nmodels:\n  - id: ${MODEL_ID}\n    source: ${model}\n  - id: ${SLASH_MODEL_ID}\n    source: ${model}\nshields:\n  - id: ${SHIELD_ID}\n    model: ${MODEL_ID}\n    excluded_categories: [S2, S3, S4, S5, S6, S7, S8, S9, S11, S13, S14]\noauth_config:\n  auth_server_uri: ${issuer}\n  stack_uri: ${baseURL}\n  enable_rate_limiting: false\n  enforce_content_safety: false\n  audit:\n    path: ${join(dir, 'audit.log')}\n`,
  );
  const server = spawn(binary, ['--threads', '1', 'serve', '--config', config], { stdio: 'inherit' });
  await waitFor(`${baseURL}/v1/health`, 'llamagate');
  return {
    baseURL,
    token: await token(issuer, baseURL, 'sdk-client'),
    noscopeToken: await token(issuer, baseURL, 'noscope-client'),
    stop: () => {
      server.kill('SIGTERM');
      authServer.kill('SIGTERM');
    },
  };
}
