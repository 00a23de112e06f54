// The official TypeScript llama-stack-client against the real server (node's test runner), with
// authentication on: the SDK sends a token from the real authorization server as its apiKey.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import LlamaStackClient from 'llama-stack-client';
import { MODEL_ID, SLASH_MODEL_ID, startStack } from './stack.mjs';

let stack;
let client;

before(async () => {
  stack = await startStack();
  client = new LlamaStackClient({ baseURL: stack.baseURL, apiKey: stack.token, maxRetries: 0, timeout: 120_000 });
});

after(() => stack?.stop());

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
    client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], n: 9 }),
    LlamaStackClient.BadRequestError,
  );
});

test('n = 2 answers two choices, indexed, with one usage', async () => {
  const messages = [{ role: 'user', content: 'Name three primary colors.' }];
  const reply = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 6, n: 2, seed: 3 });
  assert.deepEqual(reply.choices.map((c) => c.index), [0, 1]);
  assert.ok(reply.choices.every((c) => c.message.content.length > 0));
  assert.equal(reply.usage.total_tokens, reply.usage.prompt_tokens + reply.usage.completion_tokens);
  assert.ok(reply.usage.completion_tokens > 6, 'both choices count');
});

test('a missing or invalid key is AuthenticationError, a token without the model scope PermissionDeniedError', async () => {
  const messages = [{ role: 'user', content: 'hi' }];
  for (const apiKey of [undefined, 'not-a-token']) {
    const anonymous = new LlamaStackClient({ baseURL: stack.baseURL, apiKey, maxRetries: 0 });
    await assert.rejects(anonymous.models.list(), (e) => e instanceof LlamaStackClient.AuthenticationError && e.status === 401);
  }
  const unscoped = new LlamaStackClient({ baseURL: stack.baseURL, apiKey: stack.noscopeToken, maxRetries: 0 });
  assert.deepEqual(await unscoped.models.list(), []);
  await assert.rejects(
    unscoped.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 2 }),
    (e) => e instanceof LlamaStackClient.PermissionDeniedError && e.status === 403,
  );
});
