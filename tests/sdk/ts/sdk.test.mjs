// The official TypeScript llama-stack-client against the real server (node's test runner).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import LlamaStackClient from 'llama-stack-client';

const root = resolve(import.meta.dirname, '../../..');
const MODEL_ID = 'smollm2-135m-instruct';
const SLASH_MODEL_ID = 'HuggingFaceTB/SmolLM2-135M-Instruct';
let server;
let client;

const freePort = () =>
  new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });

before(async () => {
  const binary = process.env.LLAMAGATE_BIN ?? join(root, 'target/debug/llamagate');
  const model = process.env.LLAMAGATE_DEFAULT_MODEL ?? join(root, 'models/cache/SmolLM2-135M-Instruct.Q4_1.gguf');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'llamagate-ts-'));
  const config = join(dir, 'stack.yaml');
  writeFileSync(
    config,
    `server:\n  host: 127.0.0.1\n  port: ${port}\nmodels:\n  - id: ${MODEL_ID}\n    source: ${model}\n  - id: ${SLASH_MODEL_ID}\n    source: ${model}\noauth_config:\n  enable_auth: false\n`,
  );
  server = spawn(binary, ['--threads', '1', 'serve', '--config', config], { stdio: 'inherit' });
  const baseURL = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${baseURL}/v1/health`)).ok) break;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  client = new LlamaStackClient({ baseURL, maxRetries: 0, timeout: 120_000 });
});

after(() => server?.kill('SIGTERM'));

test('models list and retrieve with a raw slash in the id', async () => {
  const models = await client.models.list();
  const ids = models.map((m) => m.id);
  assert.ok(ids.includes(MODEL_ID) && ids.includes(SLASH_MODEL_ID));
  const model = await client.models.retrieve(SLASH_MODEL_ID);
  assert.equal(model.identifier, SLASH_MODEL_ID);
});

test('chat completion, plain and streamed', async () => {
  const messages = [{ role: 'user', content: 'Name three primary colors.' }];
  const reply = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 12, temperature: 0 });
  assert.ok(reply.choices[0].message.content.length > 0);
  assert.equal(reply.usage.total_tokens, reply.usage.prompt_tokens + reply.usage.completion_tokens);
  let text = '';
  const stream = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 12, temperature: 0, stream: true });
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(text, reply.choices[0].message.content);
});

test('errors map to the SDK error classes', async () => {
  await assert.rejects(client.models.retrieve('no-such-model'), LlamaStackClient.NotFoundError);
  await assert.rejects(
    client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], n: 2 }),
    LlamaStackClient.BadRequestError,
  );
});
