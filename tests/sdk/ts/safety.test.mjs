// Shields, run-shield and moderations through the official TypeScript llama-stack-client, with the
// default model standing in as the Llama Guard model (no Llama Guard weights can be downloaded here).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import LlamaStackClient from 'llama-stack-client';
import { MODEL_ID, SHIELD_ID, startStack } from './stack.mjs';

let stack;
let client;

before(async () => {
  stack = await startStack();
  // Scoring runs a ~200-token prompt through the CPU model: allow more than the SDK's 60 s.
  client = new LlamaStackClient({ baseURL: stack.baseURL, apiKey: stack.token, maxRetries: 0, timeout: 600_000 });
});

after(() => stack?.stop());

test('shields list and retrieve', async () => {
  const shields = await client.shields.list();
  assert.deepEqual(
    shields.map((s) => s.identifier),
    [SHIELD_ID],
  );
  assert.equal(shields[0].provider_id, 'llama-guard');
  assert.equal(shields[0].provider_resource_id, MODEL_ID);
  assert.equal((await client.shields.retrieve(SHIELD_ID)).identifier, SHIELD_ID);
  await assert.rejects(client.shields.retrieve('no-such-shield'), (e) => {
    assert.ok(e instanceof LlamaStackClient.BadRequestError);
    assert.equal(e.error.error.message, "Shield 'no-such-shield' not found");
    return true;
  });
});

test('run-shield answers with a violation or null', async () => {
  const response = await client.safety.runShield({
    shield_id: SHIELD_ID,
    messages: [{ role: 'user', content: 'What is the capital of France?' }],
  });
  assert.ok('violation' in response);
  if (response.violation) {
    assert.equal(response.violation.violation_level, 'error');
    assert.ok(['S1', 'S10', 'S12'].includes(response.violation.metadata.violation_type));
  }
});

test('moderations return one scored result per input', async () => {
  const result = await client.moderations.create({ input: ['Hello there!'], model: MODEL_ID });
  assert.match(result.id, /^modr-/);
  assert.equal(result.model, MODEL_ID);
  assert.equal(result.results.length, 1);
  const [moderation] = result.results;
  assert.equal(typeof moderation.flagged, 'boolean');
  assert.equal(Object.keys(moderation.category_scores).length, 14);
  for (const score of Object.values(moderation.category_scores)) assert.ok(score >= 0 && score <= 1);
  assert.equal(moderation.category_scores['Defamation'], 0);
  await assert.rejects(client.moderations.create({ input: [], model: MODEL_ID }), LlamaStackClient.BadRequestError);
});

test('shields need the model_safety scope', async () => {
  const outsider = new LlamaStackClient({ baseURL: stack.baseURL, apiKey: stack.noscopeToken, maxRetries: 0 });
  assert.deepEqual(await outsider.shields.list(), []);
  await assert.rejects(
    outsider.safety.runShield({ shield_id: SHIELD_ID, messages: [{ role: 'user', content: 'hi' }] }),
    LlamaStackClient.PermissionDeniedError,
  );
});
