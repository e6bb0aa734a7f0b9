// The official OpenFeature JavaScript SDK (@openfeature/server-sdk) with the official OFREP
// provider (@openfeature/ofrep-provider) against the real query API, started with the listener
// and the processor by e2e's TestOpenFeatureNode, which passes in the environment:
//   TOLLGATE_QUERYAPI_URL, TOLLGATE_TOKEN   the query API and one of its tokens
//   TOLLGATE_USER                           a user with an active subscription (features pro)
//   TOLLGATE_LISTENER_URL                   the listener, for the change below
//   TOLLGATE_CHANGE_BODY, TOLLGATE_CHANGE_SIGNATURE
//                                           a signed webhook that cancels the user's subscription
//   TOLLGATE_QUERYAPI_BIN, DATABASE_URL     `queryapi fail-open on|off`
// The tests run in order: the change and fail-open come last.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

function env(name) {
  const v = process.env[name];
  assert.ok(v, `${name} is not set: run this through e2e's TestOpenFeatureNode`);
  return v;
}

const baseUrl = env('TOLLGATE_QUERYAPI_URL');
const token = env('TOLLGATE_TOKEN');
const user = env('TOLLGATE_USER');
let flags;

// eventually polls check until it returns true, for at most ms.
async function eventually(what, ms, check) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    assert.ok(Date.now() < deadline, `${what} not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers: { Authorization: `Bearer ${token}` } }));
  flags = OpenFeature.getClient();
});

after(async () => {
  await OpenFeature.close();
});

test('every flag kind for a user with an active subscription', async () => {
  const ctx = { targetingKey: user };
  const premium = await flags.getBooleanDetails('premium', false, ctx);
  assert.equal(premium.value, true);
  assert.equal(premium.reason, 'TARGETING_MATCH');
  assert.equal(premium.variant, 'true');
  assert.equal(premium.errorCode, undefined);
  assert.equal(premium.flagMetadata.livemode, false);
  assert.equal(premium.flagMetadata.account, '');
  assert.equal(premium.flagMetadata.fail_open, false);
  assert.match(premium.flagMetadata.last_event_id, /^evt_/);
  assert.ok(!Number.isNaN(Date.parse(premium.flagMetadata.updated_at)));

  const status = await flags.getStringDetails('status', 'unknown', ctx);
  assert.equal(status.value, 'active');
  assert.equal(status.reason, 'TARGETING_MATCH');
  assert.equal(await flags.getBooleanValue('pro', false, ctx), true, 'a feature of the plan');
  assert.equal(await flags.getBooleanValue('export', true, ctx), false, 'a feature of the catalogue the user lacks');
  const seats = await flags.getNumberDetails('seats', 5, ctx);
  assert.equal(seats.value, 0, 'a limit the user has none of: 0, not the code default');
  assert.equal(seats.reason, 'TARGETING_MATCH');
});

test('an unknown user gets the empty answer with reason DEFAULT', async () => {
  const ctx = { targetingKey: 'u_nobody_node' };
  const premium = await flags.getBooleanDetails('premium', true, ctx);
  assert.equal(premium.value, false);
  assert.equal(premium.reason, 'DEFAULT');
  assert.equal(premium.errorCode, undefined);
  assert.equal(await flags.getStringValue('status', 'x', ctx), 'none');
  assert.equal(await flags.getNumberValue('seats', 5, ctx), 0);
  assert.equal(await flags.getBooleanValue('pro', true, ctx), false);
});

test('an unknown flag is FLAG_NOT_FOUND, and the code default is used', async () => {
  const d = await flags.getBooleanDetails('exprot', true, { targetingKey: user });
  assert.equal(d.value, true);
  assert.equal(d.reason, 'ERROR');
  assert.equal(d.errorCode, 'FLAG_NOT_FOUND');
  assert.match(d.errorMessage, /exprot/);
});

test('a missing targeting key is TARGETING_KEY_MISSING; a bad scope INVALID_CONTEXT', async () => {
  const missing = await flags.getBooleanDetails('premium', true, {});
  assert.equal(missing.value, true);
  assert.equal(missing.errorCode, 'TARGETING_KEY_MISSING');
  const bad = await flags.getBooleanDetails('premium', true, { targetingKey: user, livemode: 'yes' });
  assert.equal(bad.errorCode, 'INVALID_CONTEXT');
  const live = await flags.getBooleanDetails('premium', true, { targetingKey: user, livemode: true });
  assert.equal(live.value, false, 'the user has no live-mode answer');
  assert.equal(live.reason, 'DEFAULT');
});

test('a flag of another type than asked is TYPE_MISMATCH', async () => {
  const d = await flags.getNumberDetails('premium', 7, { targetingKey: user });
  assert.equal(d.value, 7);
  assert.equal(d.errorCode, 'TYPE_MISMATCH');
});

test('bulk evaluation: every flag, an ETag, and 304 while nothing changed', async () => {
  const post = (headers = {}) => fetch(`${baseUrl}/ofrep/v1/evaluate/flags`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ context: { targetingKey: user } }),
  });
  const res = await post();
  assert.equal(res.status, 200);
  const etag = res.headers.get('ETag');
  assert.ok(etag);
  const body = await res.json();
  assert.deepEqual(body.flags.map((f) => f.key), ['premium', 'status', 'export', 'pro', 'seats']);
  const again = await post({ 'If-None-Match': etag });
  assert.equal(again.status, 304);
});

test('a change is visible on the next evaluation', async () => {
  const res = await fetch(`${env('TOLLGATE_LISTENER_URL')}/webhooks/stripe`, {
    method: 'POST',
    headers: { 'Stripe-Signature': env('TOLLGATE_CHANGE_SIGNATURE'), 'Content-Type': 'application/json' },
    body: readFileSync(env('TOLLGATE_CHANGE_BODY')),
  });
  assert.equal(res.status, 200, await res.text());
  // The pipeline applies the event (listener, NATS, processor, Postgres) at its own pace; once the
  // query API's /v1 answer has it, the very next flag evaluation must have it too.
  await eventually('the cancellation reaching the read model', 60_000, async () => {
    const r = await fetch(`${baseUrl}/v1/users/${user}/entitlement`, { headers: { Authorization: `Bearer ${token}` } });
    return (await r.json()).status === 'canceled';
  });
  const ctx = { targetingKey: user };
  assert.equal(await flags.getStringValue('status', 'x', ctx), 'canceled');
  assert.equal(await flags.getBooleanValue('premium', true, ctx), false);
  assert.equal(await flags.getBooleanValue('pro', true, ctx), false);
});

test('fail-open: every boolean flag true with reason STATIC', async () => {
  const failOpen = (arg) => execFileSync(env('TOLLGATE_QUERYAPI_BIN'), ['fail-open', arg],
    { env: { ...process.env, DATABASE_URL: env('DATABASE_URL') }, encoding: 'utf8' });
  failOpen('on');
  try {
    const ctx = { targetingKey: 'u_nobody_node' };
    await eventually('the query API following fail-open (2 s)', 2_000, async () =>
      (await flags.getBooleanDetails('premium', false, ctx)).reason === 'STATIC');
    for (const [key, c] of [['premium', ctx], ['export', ctx], ['premium', { targetingKey: user }], ['pro', { targetingKey: user }]]) {
      const d = await flags.getBooleanDetails(key, false, c);
      assert.equal(d.value, true, key);
      assert.equal(d.reason, 'STATIC', key);
      assert.equal(d.flagMetadata.fail_open, true, key);
    }
    assert.equal(await flags.getStringValue('status', 'x', { targetingKey: user }), 'canceled', 'the real status behind the grant');
    assert.equal((await flags.getBooleanDetails('exprot', false, ctx)).errorCode, 'FLAG_NOT_FOUND', 'a typo is still a typo');
  } finally {
    failOpen('off');
  }
});
