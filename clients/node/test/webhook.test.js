'use strict';
// verifyWebhook on a real delivery. Run by tests/it/notify.rs, which has a pinwarden daemon
// deliver a signed event to a real receiver and passes it here:
//
//     PINWARDEN_WEBHOOK_SAMPLE   a JSON file { secret, body, signature, event_id } (required:
//                                without it the run FAILS, it is never skipped)
//
//     node --test clients/node/test/webhook.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');

const { verifyWebhook, WebhookVerificationError } = require('..');

const samplePath = process.env.PINWARDEN_WEBHOOK_SAMPLE;
if (!samplePath) {
  throw new Error('PINWARDEN_WEBHOOK_SAMPLE is not set: this test needs a real delivery (tests/it/notify.rs)');
}
const sample = JSON.parse(fs.readFileSync(samplePath, 'utf8'));

function sign(secret, t, body) {
  return `t=${t},v1=${crypto.createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

function refused(fn, reason) {
  assert.throws(fn, (e) => e instanceof WebhookVerificationError && e.reason === reason);
}

test('a real delivery verifies and yields its event', () => {
  const headers = { 'Pinwarden-Signature': sample.signature, 'Pinwarden-Event-Id': sample.event_id };
  const event = verifyWebhook(Buffer.from(sample.body, 'utf8'), headers, sample.secret);
  assert.equal(event.id, sample.event_id);
  // Header names are case-insensitive, a string body works too, and so does a Headers object.
  assert.equal(verifyWebhook(sample.body, { 'pinwarden-signature': sample.signature }, sample.secret).id, sample.event_id);
  const fetchHeaders = new Headers({ 'pinwarden-signature': sample.signature });
  assert.equal(verifyWebhook(sample.body, fetchHeaders, sample.secret).id, sample.event_id);
});

test('a tampered body is refused', () => {
  const tampered = sample.body.replace(/"type":"[a-z-]+"/, '"type":"pinned"').replace('}', ',"x":1}');
  assert.notEqual(tampered, sample.body);
  refused(() => verifyWebhook(tampered, { 'pinwarden-signature': sample.signature }, sample.secret), 'mismatch');
});

test('another key is refused', () => {
  refused(() => verifyWebhook(sample.body, { 'pinwarden-signature': sample.signature }, 'not-the-secret-0123456789'), 'mismatch');
});

test('a stale timestamp is refused even with a valid HMAC; a fresh one passes', () => {
  const now = Math.floor(Date.now() / 1000);
  const stale = sign(sample.secret, now - 3600, sample.body);
  refused(() => verifyWebhook(sample.body, { 'pinwarden-signature': stale }, sample.secret, 300_000), 'stale');
  const future = sign(sample.secret, now + 3600, sample.body);
  refused(() => verifyWebhook(sample.body, { 'pinwarden-signature': future }, sample.secret, 300_000), 'stale');
  const fresh = sign(sample.secret, now, sample.body);
  assert.equal(verifyWebhook(sample.body, { 'pinwarden-signature': fresh }, sample.secret, 300_000).id, sample.event_id);
  // The tolerance is the caller's: the same stale one passes a wide enough window.
  assert.equal(verifyWebhook(sample.body, { 'pinwarden-signature': stale }, sample.secret, 7_200_000).id, sample.event_id);
});

test('a missing or malformed header is refused', () => {
  refused(() => verifyWebhook(sample.body, {}, sample.secret), 'missing');
  refused(() => verifyWebhook(sample.body, { 'pinwarden-signature': 'v1=abc' }, sample.secret), 'malformed');
  refused(() => verifyWebhook(sample.body, { 'pinwarden-signature': 't=1,v2=00' }, sample.secret), 'malformed');
});
