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

test('a tool call, plain and streamed, and the tool answer fed back', async () => {
  const weather = { type: 'function', function: { name: 'get_weather', description: 'Get the current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };
  const answered = (id, city, result) => [
    { role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name: 'get_weather', arguments: JSON.stringify({ city }) } }] },
    { role: 'tool', tool_call_id: id, content: result },
  ];
  // Two answered calls make the 135M model call the tool at temperature 0 (see crates/server/tests/it/api_tools.rs).
  const messages = [{ role: 'user', content: 'Weather in Paris?' }, ...answered('call_1', 'Paris', '15 C'),
    { role: 'assistant', content: '18 C.' }, { role: 'user', content: 'Weather in Rome?' }, ...answered('call_2', 'Rome', '12 C'),
    { role: 'assistant', content: '12 C.' }, { role: 'user', content: 'Weather in London?' }];
  const request = { model: MODEL_ID, messages, tools: [weather], temperature: 0, max_tokens: 40 };
  const reply = await client.chat.completions.create(request);
  assert.equal(reply.choices[0].finish_reason, 'tool_calls');
  const [call] = reply.choices[0].message.tool_calls;
  assert.ok(call.id.startsWith('call_'));
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
  let name = '';
  let args = '';
  const stream = await client.chat.completions.create({ ...request, stream: true });
  for await (const chunk of stream) {
    for (const piece of chunk.choices[0]?.delta?.tool_calls ?? []) {
      name += piece.function?.name ?? '';
      args += piece.function?.arguments ?? '';
    }
  }
  assert.deepEqual([name, args], ['get_weather', call.function.arguments]);
  const next = [...messages, { role: 'assistant', content: null, tool_calls: [call] },
    { role: 'tool', tool_call_id: call.id, content: '9 C, rain' }];
  const final = await client.chat.completions.create({ ...request, messages: next });
  assert.ok(final.choices[0].message.content.length > 0);
  assert.equal(final.choices[0].message.tool_calls, null);
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
