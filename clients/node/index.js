'use strict';
// A client of the pinwarden daemon's HTTP/JSON API (`pinwarden serve`), over its Unix socket or
// a loopback TCP listener. No dependencies: node:http only.
//
// The wire format is the daemon's (host/src/daemon/wire.rs): requests are built from camelCase
// options and sent in snake_case; answers are returned as the daemon wrote them (snake_case).
// Every error is a PinwardenError (see the subclasses below), mirroring host/src/client.rs.

const http = require('node:http');
const crypto = require('node:crypto');

/** Per-request client-side timeout when none is given (0 disables it). */
const DEFAULT_TIMEOUT_MS = 30_000;
/** How long the daemon holds a waiting submit when the caller gives no `timeoutMs` (1 hour). */
const DAEMON_DEFAULT_WAIT_MS = 3_600_000;
/** The largest delay setTimeout accepts (beyond it Node fires after 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * Every failure of a call. `status` is the HTTP status the daemon answered with, or undefined
 * when no answer came (transport errors, client-side timeouts); `message` is the daemon's
 * `error` field (or its raw text); `body` is the parsed answer (or its raw text).
 */
class PinwardenError extends Error {
  constructor(message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.status = options.status;
    this.body = options.body;
  }
}

/** 400: the request is malformed (an invalid CID, an empty job id, an unknown state...). */
class BadRequestError extends PinwardenError {}
/** 401: the TCP listener wants a bearer token and none, or a wrong one, was sent. */
class UnauthorizedError extends PinwardenError {}
/** 403: the TCP listener refused the Host header (see daemon.allowed_hosts). */
class ForbiddenError extends PinwardenError {}
/** 404: no such job id (or CID). */
class NotFoundError extends PinwardenError {}
/** 409: the job id belongs to another CID (submit), or the job has already ended (cancel). */
class ConflictError extends PinwardenError {}
/** 503: the daemon is shutting down; a waited job stays queued and resumes when it restarts. */
class UnavailableError extends PinwardenError {}
/**
 * 504: the daemon stopped waiting for the pin (it goes on; poll `status`), or, with `status`
 * undefined, no answer came within the client's own timeout.
 */
class TimeoutError extends PinwardenError {}
/** No daemon could be reached at the socket (or host:port): `status` is undefined. */
class ConnectionError extends PinwardenError {
  constructor(message, options = {}) {
    super(message, options);
    this.endpoint = options.endpoint;
    this.code = options.code;
  }
}
/** The daemon answered 2xx with something that is not what the API describes. */
class ProtocolError extends PinwardenError {}
/**
 * A waited submit got the round's verdict and it is not `pinned`: the pin `failed`, ended in
 * `local-fallback` (pinned only on the local node), or a round failed while lazy job ids on the
 * same CID keep it `queued`. `status` is 200 (the daemon answered); `job` is the pin.
 */
class PinFailedError extends PinwardenError {
  constructor(message, options = {}) {
    super(message, options);
    this.job = options.job;
    this.jobId = options.jobId;
  }
}

const BY_STATUS = new Map([
  [400, BadRequestError],
  [401, UnauthorizedError],
  [403, ForbiddenError],
  [404, NotFoundError],
  [409, ConflictError],
  [503, UnavailableError],
  [504, TimeoutError],
]);

/** The typed error for a 4xx/5xx answer (the daemon's `{"error": "..."}`). */
function apiError(status, text) {
  let body = text;
  let message;
  try {
    body = JSON.parse(text);
    if (body !== null && typeof body === 'object' && typeof body.error === 'string') {
      message = body.error;
    }
  } catch {
    body = text;
  }
  if (message === undefined) message = text.trim();
  if (message === '') message = `the daemon gave no reason (HTTP ${status})`;
  const Class = BY_STATUS.get(status) || PinwardenError;
  return new Class(message, { status, body });
}

// ---------------------------------------------------------------------------------------------
// Argument checks (programming errors are TypeErrors, thrown before anything is sent)

function nonEmptyString(value, what) {
  if (typeof value !== 'string' || value === '') {
    throw new TypeError(`${what} must be a non-empty string`);
  }
  return value;
}

function millis(value, what) {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`${what} must be a whole number of milliseconds >= 0`);
  }
  return value;
}

function submitBody(options, wait) {
  if (options === null || typeof options !== 'object') {
    throw new TypeError('expected an options object { cid, jobId, sizeBytes? }');
  }
  if (options.jobId === undefined && 'job_id' in options) {
    throw new TypeError('the option is jobId (camelCase); the client sends it as job_id');
  }
  // cid and jobId are the daemon's to judge (it answers 400 with the reason); only their
  // presence in the JSON is up to us, and JSON.stringify drops undefined.
  const body = { cid: options.cid, job_id: options.jobId, wait };
  if (options.sizeBytes !== undefined) body.size_bytes = options.sizeBytes;
  if (options.notify !== undefined) body.notify = options.notify;
  return body;
}

// ---------------------------------------------------------------------------------------------
// The client

class PinwardenClient {
  /**
   * @param {object} [options]
   * @param {string} [options.socketPath] the daemon's Unix socket; default: env PINWARDEN_SOCKET.
   *   (The daemon's own default is `<data_dir>/pinwarden.sock`, relative to where it runs, so
   *   the client cannot guess it: give it, or set PINWARDEN_SOCKET.)
   * @param {string} [options.host] TCP instead of the socket (`pinwarden serve --listen`),
   *   default 127.0.0.1 when only `port` is given.
   * @param {number} [options.port]
   * @param {string} [options.token] bearer token (required by every TCP listener; the socket
   *   ignores it).
   * @param {number} [options.timeoutMs] client-side limit per call (default 30000; 0: none).
   *   A waited submit gets the daemon's wait plus this.
   */
  constructor(options = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('PinwardenClient options must be an object');
    }
    const { socketPath, host, port, token, timeoutMs = DEFAULT_TIMEOUT_MS } = options;
    const tcp = host !== undefined || port !== undefined;
    if (tcp && socketPath !== undefined) {
      throw new TypeError('give either socketPath or host/port, not both');
    }
    if (tcp) {
      const h = host === undefined ? '127.0.0.1' : nonEmptyString(host, 'host');
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new TypeError('port must be an integer from 1 to 65535');
      }
      // The daemon answers only Host headers naming the listener (or a loopback name on its
      // port): send host:port even where Node would leave the port out.
      const named = h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
      this._target = { host: h.startsWith('[') ? h.slice(1, -1) : h, port };
      this._hostHeader = `${named}:${port}`;
      this.endpoint = `${named}:${port}`;
    } else {
      const path = socketPath !== undefined ? socketPath : process.env.PINWARDEN_SOCKET;
      if (typeof path !== 'string' || path === '') {
        throw new TypeError(
          'no daemon socket: pass { socketPath } or set PINWARDEN_SOCKET (the daemon listens ' +
            'on <data_dir>/pinwarden.sock unless daemon.socket or --socket says otherwise), ' +
            'or pass { host, port } for its TCP listener',
        );
      }
      this._target = { socketPath: path };
      this._hostHeader = 'pinwarden';
      this.endpoint = path;
    }
    if (token !== undefined) nonEmptyString(token, 'token');
    this._token = token;
    this.timeoutMs = millis(timeoutMs, 'timeoutMs');
  }

  /**
   * Queues a pin and returns at once (the daemon answers 202 once the submission is on disk).
   * Submitting a CID again attaches the job id to its pin; a job id names one CID (409 else).
   */
  async submit(options) {
    const body = submitBody(options, false);
    const reply = await this._call('POST', '/v1/pins', body);
    return job(reply, this);
  }

  /**
   * Submits and waits for the pin's verdict. Resolves with the pin when it is `pinned`; rejects
   * with PinFailedError when the round ended otherwise (`err.job` holds the pin), TimeoutError
   * (504) when the daemon stopped waiting after `timeoutMs` (the pin goes on),
   * UnavailableError (503) when the daemon is shutting down (the job stays queued).
   */
  async submitAndWait(options) {
    const body = submitBody(options, true);
    let waitMs = DAEMON_DEFAULT_WAIT_MS;
    if (options.timeoutMs !== undefined) {
      waitMs = millis(options.timeoutMs, 'timeoutMs');
      body.timeout_ms = waitMs;
    }
    // The daemon answers 504 itself when its wait ends: give it that long, plus our margin.
    const limit = this.timeoutMs === 0 ? 0 : waitMs + this.timeoutMs;
    const row = job(await this._call('POST', '/v1/pins', body, limit), this);
    if (row.state === 'pinned') return row;
    throw new PinFailedError(verdict(row, options.jobId), {
      status: 200,
      body: { job: row },
      job: row,
      jobId: options.jobId,
    });
  }

  /** The pin a job id (or a CID, in either CIDv0 or CIDv1 form) points at. */
  async status(key) {
    const reply = await this._call('GET', `/v1/jobs/${encodeURIComponent(nonEmptyString(key, 'key'))}`);
    return job(reply, this);
  }

  /**
   * Pins, most recently updated first: all (default) or those in `state`; at most `limit`
   * (the daemon's default 100, at most 10000).
   */
  async jobs(options = {}) {
    const query = new URLSearchParams();
    if (options.state !== undefined) query.set('state', String(options.state));
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    const q = query.toString();
    const reply = await this._call('GET', q === '' ? '/v1/jobs' : `/v1/jobs?${q}`);
    if (!Array.isArray(reply && reply.jobs)) throw protocol('no "jobs" array', reply, this);
    return reply.jobs;
  }

  /**
   * Cancels one job id. The last job id on a CID cancels its pin (it ends `failed`, a running
   * round is stopped); with other job ids on it the pin goes on for them.
   */
  async cancel(jobId) {
    const reply = await this._call(
      'DELETE',
      `/v1/jobs/${encodeURIComponent(nonEmptyString(jobId, 'jobId'))}`,
    );
    return job(reply, this);
  }

  /** Liveness, the active policy and its content hash, pins by state. */
  async health() {
    const reply = await this._call('GET', '/v1/health');
    if (reply === null || typeof reply !== 'object' || typeof reply.status !== 'string') {
      throw protocol('not a health answer', reply, this);
    }
    return reply;
  }

  /** Every node's live health and circuit breaker. */
  async nodes() {
    const reply = await this._call('GET', '/v1/nodes');
    if (!Array.isArray(reply && reply.nodes)) throw protocol('no "nodes" array', reply, this);
    return reply.nodes;
  }

  /** One request; resolves with the parsed 2xx body, rejects with a PinwardenError. */
  _call(method, path, payload, timeoutMs = this.timeoutMs) {
    return new Promise((resolve, reject) => {
      const data = payload === undefined ? undefined : Buffer.from(JSON.stringify(payload));
      const headers = { host: this._hostHeader, accept: 'application/json' };
      if (data !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(data.length);
      }
      if (this._token !== undefined) headers.authorization = `Bearer ${this._token}`;

      let timer;
      let settled = false;
      const settle = (fn, value) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        fn(value);
      };
      const fail = (e) => settle(reject, e instanceof PinwardenError ? e : this._unreachable(e));

      let req;
      try {
        // A connection per call (agent: false): nothing pooled is left open to hold the
        // process, count against the daemon's max_connections, or be closed under us.
        req = http.request({ ...this._target, method, path, headers, agent: false }, (res) => {
          const chunks = [];
          res.on('data', (chunk) => chunks.push(chunk));
          res.on('error', fail);
          res.on('close', () => {
            if (!res.complete) fail(new Error('the connection closed before the answer was complete'));
          });
          res.on('end', () => {
            const status = res.statusCode;
            const text = Buffer.concat(chunks).toString('utf8');
            if (status < 200 || status > 299) return settle(reject, apiError(status, text));
            try {
              settle(resolve, JSON.parse(text));
            } catch (e) {
              settle(reject, protocol(`${e.message} in ${text.slice(0, 200)}`, text, this, status));
            }
          });
        });
      } catch (e) {
        // Bad header characters in the token, say.
        return settle(reject, e);
      }
      req.on('error', fail);
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          const e = new TimeoutError(
            `no answer from the daemon at ${this.endpoint} within ${timeoutMs} ms`,
            { status: undefined },
          );
          settle(reject, e);
          req.destroy(e);
        }, Math.min(timeoutMs, MAX_TIMER_MS));
      }
      req.end(data);
    });
  }

  _unreachable(e) {
    const hints = {
      ENOENT: 'no socket at that path',
      ECONNREFUSED: 'connection refused (nothing listens there; a stale socket?)',
      EACCES: "permission denied (the socket is its owner's alone: run as the daemon's user)",
      ENOTSOCK: 'not a socket',
    };
    const reason = hints[e && e.code] || (e && e.message) || String(e);
    return new ConnectionError(
      `cannot reach the daemon at ${this.endpoint}: ${reason} (is \`pinwarden serve\` running?)`,
      { endpoint: this.endpoint, code: e && e.code, cause: e },
    );
  }
}

function protocol(what, body, client, status = 200) {
  return new ProtocolError(`unexpected answer from the daemon at ${client.endpoint}: ${what}`, {
    status,
    body,
  });
}

/** The `job` of a JobReply. */
function job(reply, client) {
  const row = reply && reply.job;
  if (row === null || typeof row !== 'object' || typeof row.state !== 'string') {
    throw protocol('no "job" object', reply, client);
  }
  return row;
}

/** Why a waited pin is not `pinned`, in words. */
function verdict(row, jobId) {
  const who = `job '${jobId}' (${row.cid})`;
  const reason = row.reason ? `: ${row.reason}` : '';
  switch (row.state) {
    case 'failed':
      return `${who}: the pin failed${reason}`;
    case 'local-fallback':
      return `${who}: pinned only on the local node (local-fallback), not on the primary or a backup`;
    default:
      return (
        `${who}: the round failed${reason}; the pin stays ${row.state} for the lazy job ids on ` +
        `it (${row.failed_rounds} failed rounds)`
      );
  }
}

// ---------------------------------------------------------------------------------------------
// Webhooks: the receiver's side

/** How old a webhook's signed timestamp may be when `verifyWebhook` is given none (5 min). */
const DEFAULT_WEBHOOK_TOLERANCE_MS = 300_000;

/** A webhook refused by `verifyWebhook`: `reason` is `missing`, `malformed`, `stale` or `mismatch`. */
class WebhookVerificationError extends Error {
  constructor(reason, message) {
    super(message);
    this.name = 'WebhookVerificationError';
    this.reason = reason;
  }
}

function headerValue(headers, name) {
  if (headers && typeof headers.get === 'function') return headers.get(name) ?? undefined;
  const wanted = name.toLowerCase();
  for (const [k, v] of Object.entries(headers || {})) {
    if (k.toLowerCase() === wanted) return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

/**
 * Checks a pinwarden webhook and returns its event. `rawBody` must be the bytes as received
 * (a Buffer or string), before any JSON parsing: the signature covers them exactly. Throws a
 * WebhookVerificationError when the `Pinwarden-Signature` header is missing or malformed, its
 * timestamp is further than `toleranceMs` from now (a replay), or no `v1` signature matches.
 * De-duplicate the returned event by its `id`: a delivery can be repeated.
 */
function verifyWebhook(rawBody, headers, secret, toleranceMs = DEFAULT_WEBHOOK_TOLERANCE_MS) {
  if (typeof secret !== 'string' && !Buffer.isBuffer(secret)) {
    throw new TypeError('secret must be the shared secret, as a string or Buffer');
  }
  const body = Buffer.isBuffer(rawBody) ? rawBody : Buffer.from(String(rawBody), 'utf8');
  const header = headerValue(headers, 'pinwarden-signature');
  if (!header) {
    throw new WebhookVerificationError('missing', 'no Pinwarden-Signature header');
  }
  let t;
  const sigs = [];
  for (const part of String(header).split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^[0-9]+$/.test(value)) t = Number(value);
    if (key === 'v1' && /^[0-9a-f]{64}$/.test(value)) sigs.push(Buffer.from(value, 'hex'));
  }
  if (t === undefined || sigs.length === 0) {
    throw new WebhookVerificationError('malformed', `Pinwarden-Signature '${header}' has no t= and v1=`);
  }
  const ageMs = Math.abs(Date.now() - t * 1000);
  if (ageMs > toleranceMs) {
    throw new WebhookVerificationError(
      'stale',
      `the signature's timestamp is ${Math.round(ageMs / 1000)} s from now (tolerance ${toleranceMs} ms)`,
    );
  }
  const expected = crypto
    .createHmac('sha256', secret)
    .update(`${t}.`)
    .update(body)
    .digest();
  if (!sigs.some((sig) => crypto.timingSafeEqual(sig, expected))) {
    throw new WebhookVerificationError('mismatch', 'the signature does not match the body');
  }
  return JSON.parse(body.toString('utf8'));
}

module.exports = {
  verifyWebhook,
  WebhookVerificationError,
  PinwardenClient,
  PinwardenError,
  BadRequestError,
  UnauthorizedError,
  ForbiddenError,
  NotFoundError,
  ConflictError,
  UnavailableError,
  TimeoutError,
  ConnectionError,
  ProtocolError,
  PinFailedError,
};
