'use strict';
// Tests of @pinwarden/client.
//
// * Against a REAL daemon: its socket and two CIDs it can pin arrive by environment variables,
//   set by the Rust integration test tests/it/node_client.rs (which starts js-ipfs nodes and
//   `pinwarden serve`, uploads the content and runs this file):
//     PINWARDEN_SOCKET      the daemon's Unix socket (required: without it the run FAILS)
//     PINWARDEN_TEST_CID    content on the primary, for submitAndWait
//     PINWARDEN_TEST_CID_2  other content on the primary, for a lazy submit
//     PINWARDEN_TCP         optional host:port of the daemon's TCP listener, with
//     PINWARDEN_TOKEN       its bearer token
//   The daemon is expected to give up on unreachable content within seconds (the Rust test
//   configures attempts = 2 and short pin timeouts), for the failed-pin test.
// * Against small fake daemons on private sockets, for answers a healthy daemon does not give
//   on demand (503 while shutting down, a hung request, a non-JSON error).
//
// Every wait is bounded; nothing is left running.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const {
  PinwardenClient,
  PinwardenError,
  BadRequestError,
  UnauthorizedError,
  NotFoundError,
  ConflictError,
  UnavailableError,
  TimeoutError,
  ConnectionError,
  ProtocolError,
  PinFailedError,
} = require('..');

const env = process.env;
const RUN = `node-client-${process.pid}-${Date.now().toString(36)}`;
const POLL_LIMIT_MS = 60_000;
const TEST_TIMEOUT = { timeout: 120_000 };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A CIDv1 (raw, sha2-256) of random bytes: content no node has. */
function ghostCid() {
  const digest = crypto.createHash('sha256').update(crypto.randomBytes(64)).digest();
  const bytes = Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), digest]);
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = 'b';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** Resolves with the rejection of `promise`, failing if it resolves. */
async function rejection(promise) {
  try {
    const value = await promise;
    assert.fail(`expected a rejection, got ${JSON.stringify(value)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return e;
  }
}

// ---------------------------------------------------------------------------------------------
// Against the real daemon

const missing = ['PINWARDEN_SOCKET', 'PINWARDEN_TEST_CID', 'PINWARDEN_TEST_CID_2'].filter(
  (name) => !env[name],
);

if (missing.length > 0) {
  test('a real daemon is given', () => {
    assert.fail(
      `${missing.join(', ')} not set: these tests run against a real \`pinwarden serve\`. ` +
        'Run them through the Rust integration test, which starts one and sets them: ' +
        'cargo test -p pinwarden --test it -- node_client',
    );
  });
} else {
  const SOCKET = env.PINWARDEN_SOCKET;
  const CID = env.PINWARDEN_TEST_CID;
  const CID_2 = env.PINWARDEN_TEST_CID_2;
  const client = new PinwardenClient({ socketPath: SOCKET });
  /** Every job id the tests submitted, for the jobs() test. */
  const submitted = new Set();

  test('health(): the daemon is up, with its policy and every queue state', TEST_TIMEOUT, async () => {
    const h = await client.health();
    assert.equal(h.status, 'ok');
    assert.equal(typeof h.policy.name, 'string');
    assert.match(h.policy.hash, /^sha256:/);
    assert.equal(typeof h.policy.source, 'string');
    assert.equal(typeof h.node_name, 'string');
    assert.equal(typeof h.policy_reloads, 'number');
    for (const state of ['queued', 'pinning', 'pinned', 'failed', 'local-fallback']) {
      assert.equal(typeof h.queue[state], 'number', `queue.${state} in ${JSON.stringify(h)}`);
    }
  });

  test('nodes(): every configured node with its breaker', TEST_TIMEOUT, async () => {
    const nodes = await client.nodes();
    assert.ok(nodes.length >= 1, JSON.stringify(nodes));
    assert.ok(nodes.some((n) => n.role === 'primary'), JSON.stringify(nodes));
    for (const n of nodes) {
      assert.equal(typeof n.name, 'string');
      assert.ok(['closed', 'half-open', 'open'].includes(n.breaker), JSON.stringify(n));
      assert.equal(typeof n.in_flight, 'number');
    }
  });

  test('submit() is lazy: queued at once, then pinned (polled with status())', TEST_TIMEOUT, async () => {
    const jobId = `${RUN}-lazy`;
    const row = await client.submit({ cid: CID_2, jobId, sizeBytes: 4096 });
    submitted.add(jobId);
    assert.equal(row.cid, CID_2);
    assert.ok(row.job_ids.includes(jobId), JSON.stringify(row));
    assert.ok(['queued', 'pinning', 'pinned'].includes(row.state), JSON.stringify(row));
    assert.equal(row.size_bytes, 4096);

    const deadline = Date.now() + POLL_LIMIT_MS;
    let now = row;
    while (now.state !== 'pinned' && Date.now() < deadline) {
      assert.ok(['queued', 'pinning'].includes(now.state), `unexpected: ${JSON.stringify(now)}`);
      await sleep(200);
      now = await client.status(jobId);
    }
    assert.equal(now.state, 'pinned', `not pinned within ${POLL_LIMIT_MS} ms: ${JSON.stringify(now)}`);
    assert.ok(now.confirmed.length >= 1, JSON.stringify(now));
    // The same pin by its CID.
    const byCid = await client.status(CID_2);
    assert.equal(byCid.cid, CID_2);
    assert.ok(byCid.job_ids.includes(jobId));
  });

  test('submitAndWait() resolves with the pin once it is pinned', TEST_TIMEOUT, async () => {
    const jobId = `${RUN}-wait`;
    const row = await client.submitAndWait({ cid: CID, jobId, sizeBytes: 4096, timeoutMs: 60_000 });
    submitted.add(jobId);
    assert.equal(row.state, 'pinned', JSON.stringify(row));
    assert.equal(row.cid, CID);
    assert.ok(row.job_ids.includes(jobId), JSON.stringify(row));
    assert.ok(row.confirmed.length >= 1, JSON.stringify(row));
    assert.equal(row.reason, null);
    // Submitting a pinned CID again is answered at once, pinned.
    const again = await client.submitAndWait({ cid: CID, jobId: `${jobId}-again` });
    submitted.add(`${jobId}-again`);
    assert.equal(again.state, 'pinned');
  });

  test('a job id that names another CID: ConflictError (409)', TEST_TIMEOUT, async () => {
    const jobId = `${RUN}-conflict`;
    await client.submit({ cid: CID_2, jobId });
    submitted.add(jobId);
    const e = await rejection(client.submit({ cid: CID, jobId }));
    assert.ok(e instanceof ConflictError, `${e}`);
    assert.equal(e.status, 409);
    assert.match(e.message, new RegExp(`job id '${jobId}' already belongs to CID`));
    assert.deepEqual(e.body, { error: e.message });
  });

  test('status() of an unknown job: NotFoundError (404) with the daemon message', TEST_TIMEOUT, async () => {
    // A key that needs encoding: the daemon must see it whole.
    const key = `${RUN}/no such job?&#%`;
    const e = await rejection(client.status(key));
    assert.ok(e instanceof NotFoundError, `${e}`);
    assert.ok(e instanceof PinwardenError && e instanceof Error);
    assert.equal(e.name, 'NotFoundError');
    assert.equal(e.status, 404);
    assert.equal(e.message, `no job or CID '${key}'`);
    assert.deepEqual(e.body, { error: `no job or CID '${key}'` });
  });

  test('bad input: BadRequestError (400) with the daemon message', TEST_TIMEOUT, async () => {
    const cases = [
      [{ cid: '', jobId: `${RUN}-bad-1` }, "invalid CID ''"],
      [{ cid: 'not-a-cid', jobId: `${RUN}-bad-2` }, "invalid CID 'not-a-cid'"],
      [{ cid: CID, jobId: '' }, 'job_id must be 1 to 256 characters'],
      [{ cid: CID, jobId: 'x'.repeat(257) }, 'job_id must be 1 to 256 characters'],
      [{ jobId: `${RUN}-bad-3` }, 'cid'],
    ];
    for (const [options, needle] of cases) {
      for (const call of [(o) => client.submit(o), (o) => client.submitAndWait(o)]) {
        const e = await rejection(call(options));
        assert.ok(e instanceof BadRequestError, `${JSON.stringify(options)}: ${e}`);
        assert.equal(e.status, 400);
        assert.ok(e.message.includes(needle), `${JSON.stringify(options)}: ${e.message}`);
      }
    }
    const e = await rejection(client.jobs({ state: 'lost' }));
    assert.ok(e instanceof BadRequestError, `${e}`);
    assert.match(e.message, /unknown state 'lost'/);
  });

  test('cancel() of an unknown job: NotFoundError (404)', TEST_TIMEOUT, async () => {
    const jobId = `${RUN}-never-submitted`;
    const e = await rejection(client.cancel(jobId));
    assert.ok(e instanceof NotFoundError, `${e}`);
    assert.equal(e.status, 404);
    assert.equal(e.message, `no job '${jobId}'`);
  });

  test('cancel() of a lazy job: failed, cancelled; again: ConflictError (409)', TEST_TIMEOUT, async () => {
    const jobId = `${RUN}-cancel`;
    const row = await client.submit({ cid: ghostCid(), jobId });
    submitted.add(jobId);
    assert.equal(row.lazy, true);
    const cancelled = await client.cancel(jobId);
    assert.equal(cancelled.state, 'failed', JSON.stringify(cancelled));
    assert.equal(cancelled.reason, 'cancelled by operator');
    const e = await rejection(client.cancel(jobId));
    assert.ok(e instanceof ConflictError, `${e}`);
    assert.equal(e.status, 409);
    assert.equal(e.message, `job '${jobId}' already ended: failed`);
  });

  test('submitAndWait() when the daemon stops waiting: TimeoutError (504)', TEST_TIMEOUT, async () => {
    const jobId = `${RUN}-wait-timeout`;
    const e = await rejection(client.submitAndWait({ cid: ghostCid(), jobId, timeoutMs: 1 }));
    submitted.add(jobId);
    assert.ok(e instanceof TimeoutError, `${e}`);
    assert.equal(e.status, 504);
    assert.match(e.message, /after 1 ms; the pin goes on/);
    // The pin goes on: stop it (it may have failed already, with its short timeouts).
    try {
      const row = await client.cancel(jobId);
      assert.equal(row.state, 'failed');
    } catch (err) {
      assert.ok(err instanceof ConflictError, `${err}`);
    }
  });

  test('submitAndWait() of content no node has: PinFailedError with the failed pin', TEST_TIMEOUT, async () => {
    const jobId = `${RUN}-wait-fail`;
    const cid = ghostCid();
    const e = await rejection(client.submitAndWait({ cid, jobId, timeoutMs: 90_000 }));
    submitted.add(jobId);
    assert.ok(
      !(e instanceof TimeoutError),
      `the daemon's policy did not give up on unreachable content within 90 s (${e.message}); ` +
        'run against a daemon with short pin timeouts, as tests/it/node_client.rs configures',
    );
    assert.ok(e instanceof PinFailedError, `${e}`);
    assert.ok(e instanceof PinwardenError);
    assert.equal(e.status, 200);
    assert.equal(e.jobId, jobId);
    assert.equal(e.job.cid, cid);
    assert.equal(e.job.state, 'failed', JSON.stringify(e.job));
    assert.ok(e.job.failed_rounds >= 1, JSON.stringify(e.job));
    assert.equal(typeof e.job.reason, 'string');
    assert.ok(e.message.includes(e.job.reason), e.message);
    assert.deepEqual(e.body, { job: e.job });
  });

  test('jobs() lists the submitted job ids', TEST_TIMEOUT, async () => {
    const jobId = `${RUN}-listed`;
    await client.submit({ cid: CID_2, jobId });
    submitted.add(jobId);
    const rows = await client.jobs({ limit: 10_000 });
    const listed = new Set(rows.flatMap((r) => r.job_ids));
    for (const id of submitted) assert.ok(listed.has(id), `${id} not in ${[...listed]}`);
    const pinned = await client.jobs({ state: 'pinned' });
    assert.ok(pinned.length >= 2 && pinned.every((r) => r.state === 'pinned'), JSON.stringify(pinned));
    assert.ok(pinned.some((r) => r.cid === CID) && pinned.some((r) => r.cid === CID_2));
  });

  test('TCP with the bearer token; without it: UnauthorizedError (401)', TEST_TIMEOUT, async (t) => {
    if (!env.PINWARDEN_TCP || !env.PINWARDEN_TOKEN) {
      t.skip('PINWARDEN_TCP and PINWARDEN_TOKEN not set (the daemon has no TCP listener)');
      return;
    }
    const at = env.PINWARDEN_TCP.lastIndexOf(':');
    const host = env.PINWARDEN_TCP.slice(0, at);
    const port = Number(env.PINWARDEN_TCP.slice(at + 1));
    const tcp = new PinwardenClient({ host, port, token: env.PINWARDEN_TOKEN });
    assert.equal((await tcp.health()).status, 'ok');
    assert.equal((await tcp.status(`${RUN}-wait`)).state, 'pinned');
    for (const token of [undefined, `${env.PINWARDEN_TOKEN}-wrong`]) {
      const e = await rejection(new PinwardenClient({ host, port, token }).health());
      assert.ok(e instanceof UnauthorizedError, `${e}`);
      assert.equal(e.status, 401);
      assert.equal(e.message, 'missing or wrong bearer token');
    }
    // `localhost` is one of the Host names a loopback listener answers to.
    if (host === '127.0.0.1') {
      const named = new PinwardenClient({ host: 'localhost', port, token: env.PINWARDEN_TOKEN });
      assert.equal((await named.health()).status, 'ok');
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Without a daemon

test('a client pointed at a missing socket: ConnectionError naming the path', TEST_TIMEOUT, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pinwarden-client-'));
  try {
    const socketPath = path.join(dir, 'no-daemon.sock');
    const e = await rejection(new PinwardenClient({ socketPath }).health());
    assert.ok(e instanceof ConnectionError, `${e}`);
    assert.ok(e instanceof PinwardenError);
    assert.equal(e.status, undefined);
    assert.equal(e.code, 'ENOENT');
    assert.equal(e.endpoint, socketPath);
    assert.ok(e.message.includes(socketPath), e.message);
    assert.ok(e.message.includes('pinwarden serve'), e.message);
    // Nothing listening on a TCP port either.
    const port = await freePort();
    const t = await rejection(new PinwardenClient({ port }).health());
    assert.ok(t instanceof ConnectionError, `${t}`);
    assert.equal(t.code, 'ECONNREFUSED');
    assert.ok(t.message.includes(`127.0.0.1:${port}`), t.message);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the constructor wants a socket (or PINWARDEN_SOCKET), or host and port', () => {
  const saved = env.PINWARDEN_SOCKET;
  delete env.PINWARDEN_SOCKET;
  try {
    assert.throws(() => new PinwardenClient(), /PINWARDEN_SOCKET/);
    env.PINWARDEN_SOCKET = '/tmp/from-env.sock';
    assert.equal(new PinwardenClient().endpoint, '/tmp/from-env.sock');
  } finally {
    if (saved === undefined) delete env.PINWARDEN_SOCKET;
    else env.PINWARDEN_SOCKET = saved;
  }
  assert.throws(() => new PinwardenClient({ socketPath: '/x', port: 1 }), /not both/);
  assert.throws(() => new PinwardenClient({ host: 'localhost' }), /port/);
  assert.throws(() => new PinwardenClient({ socketPath: '/x', timeoutMs: -1 }), /timeoutMs/);
  assert.equal(new PinwardenClient({ host: '::1', port: 7070 }).endpoint, '[::1]:7070');
});

/** A fake daemon on a private socket: `handler(req, body, res)` answers. */
async function fakeDaemon(handler) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pinwarden-fake-'));
  const socketPath = path.join(dir, 'fake.sock');
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      handler(req, body, res);
    });
  });
  await new Promise((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    seen,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function answer(res, status, body, type = 'application/json') {
  res.writeHead(status, { 'content-type': type });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

const ROW = {
  cid: 'bafkqaaa',
  state: 'queued',
  lazy: true,
  size_bytes: 10,
  failed_rounds: 0,
  next_attempt_at_ms: 1,
  created_at_ms: 1,
  updated_at_ms: 1,
  confirmed: [],
  reason: null,
  decided_by: null,
  job_ids: ['j/1 a'],
};

test('requests: snake_case bodies, encoded keys, the bearer token', TEST_TIMEOUT, async () => {
  const fake = await fakeDaemon((req, body, res) => {
    if (req.url.startsWith('/v1/jobs?')) return answer(res, 200, { jobs: [ROW] });
    if (req.method === 'POST') {
      const wait = JSON.parse(body).wait;
      return answer(res, wait ? 200 : 202, { job: { ...ROW, state: wait ? 'pinned' : 'queued' } });
    }
    return answer(res, 200, { job: ROW });
  });
  try {
    const c = new PinwardenClient({ socketPath: fake.socketPath, token: 'secret-token-0123456789' });
    assert.equal((await c.submit({ cid: 'bafkqaaa', jobId: 'j/1 a', sizeBytes: 10 })).state, 'queued');
    assert.equal((await c.submitAndWait({ cid: 'bafkqaaa', jobId: 'j/1 a', timeoutMs: 5 })).state, 'pinned');
    await c.status('j/1 a');
    await c.cancel('j/1 a');
    assert.deepEqual(await c.jobs({ state: 'local-fallback', limit: 5 }), [ROW]);
    const [lazy, waited, status, cancel, jobs] = fake.seen;
    assert.deepEqual(JSON.parse(lazy.body), { cid: 'bafkqaaa', job_id: 'j/1 a', wait: false, size_bytes: 10 });
    assert.equal(lazy.headers['content-type'], 'application/json');
    assert.equal(lazy.headers.authorization, 'Bearer secret-token-0123456789');
    assert.deepEqual(JSON.parse(waited.body), { cid: 'bafkqaaa', job_id: 'j/1 a', wait: true, timeout_ms: 5 });
    assert.deepEqual([status.method, status.url], ['GET', '/v1/jobs/j%2F1%20a']);
    assert.deepEqual([cancel.method, cancel.url], ['DELETE', '/v1/jobs/j%2F1%20a']);
    assert.equal(jobs.url, '/v1/jobs?state=local-fallback&limit=5');
    await assert.rejects(c.submit({ cid: 'x', job_id: 'y' }), TypeError);
    await assert.rejects(c.status(''), TypeError);
  } finally {
    await fake.close();
  }
});

test('answers no healthy daemon gives on demand', TEST_TIMEOUT, async () => {
  const fake = await fakeDaemon((req, body, res) => {
    if (req.url === '/v1/jobs/hang') return; // never answered
    if (req.url === '/v1/jobs/text') return answer(res, 500, 'internal trouble\n', 'text/plain');
    if (req.url === '/v1/jobs/empty') return answer(res, 502, '', 'text/plain');
    if (req.url === '/v1/jobs/garbage') return answer(res, 200, '<html>', 'text/html');
    if (req.url === '/v1/health') return answer(res, 200, { status: 'ok' });
    const { job_id: jobId } = JSON.parse(body);
    if (jobId === 'stopping') {
      return answer(res, 503, {
        error: "the daemon is shutting down; job 'stopping' is still queued and resumes when it starts again",
      });
    }
    const state = jobId === 'fallback' ? 'local-fallback' : 'queued';
    const reason = jobId === 'fallback' ? null : 'CRITICAL: every node failed';
    return answer(res, 200, { job: { ...ROW, state, reason, failed_rounds: 3 } });
  });
  try {
    const c = new PinwardenClient({ socketPath: fake.socketPath, timeoutMs: 300 });

    let e = await rejection(c.status('hang'));
    assert.ok(e instanceof TimeoutError, `${e}`);
    assert.equal(e.status, undefined);
    assert.match(e.message, /within 300 ms/);

    e = await rejection(c.status('text'));
    assert.equal(e.constructor, PinwardenError);
    assert.deepEqual([e.status, e.message, e.body], [500, 'internal trouble', 'internal trouble\n']);

    e = await rejection(c.status('empty'));
    assert.equal(e.status, 502);
    assert.match(e.message, /gave no reason/);

    e = await rejection(c.status('garbage'));
    assert.ok(e instanceof ProtocolError, `${e}`);

    e = await rejection(c.submitAndWait({ cid: 'bafkqaaa', jobId: 'stopping' }));
    assert.ok(e instanceof UnavailableError, `${e}`);
    assert.equal(e.status, 503);
    assert.match(e.message, /still queued/);

    // A round failed while lazy job ids keep the pin queued: not pinned, so a rejection.
    e = await rejection(c.submitAndWait({ cid: 'bafkqaaa', jobId: 'lazy-too' }));
    assert.ok(e instanceof PinFailedError, `${e}`);
    assert.equal(e.job.state, 'queued');
    assert.match(e.message, /CRITICAL: every node failed/);

    e = await rejection(c.submitAndWait({ cid: 'bafkqaaa', jobId: 'fallback' }));
    assert.ok(e instanceof PinFailedError, `${e}`);
    assert.equal(e.job.state, 'local-fallback');
    assert.match(e.message, /local node/);

    assert.equal((await c.health()).status, 'ok');
  } finally {
    await fake.close();
  }
});

function freePort() {
  return new Promise((resolve, reject) => {
    const server = require('node:net').createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}
