// Types of @pinwarden/client: the daemon's JSON as it is on the wire (host/src/daemon/wire.rs,
// host/src/queue.rs, host/src/health.rs), in snake_case; the client's own options in camelCase.

/** A pin's state: `queued` → `pinning` → `pinned` | `local-fallback` | `failed`. */
export type PinState = 'queued' | 'pinning' | 'pinned' | 'failed' | 'local-fallback';

/** One CID's pin and the job ids on it: what submit, status and cancel answer with. */
export interface PinRow {
  /** The CID being pinned (as its first caller wrote it). */
  cid: string;
  state: PinState;
  /** True while any job id on it was submitted lazily (a lazy pin never ends `failed`). */
  lazy: boolean;
  size_bytes: number;
  /** Rounds that ended in failure so far. */
  failed_rounds: number;
  /** When a queued pin is next due (Unix ms). */
  next_attempt_at_ms: number;
  created_at_ms: number;
  updated_at_ms: number;
  /** Nodes that confirmed the pin (names from the daemon's config). */
  confirmed: string[];
  /** Why the last round failed (`cancelled by operator` after a cancel); null otherwise. */
  reason: string | null;
  /** The policy (name) that decided the last round; null before any. */
  decided_by: string | null;
  /** Every job id on this CID, oldest first. */
  job_ids: string[];
  /**
   * Only on a lookup by job id, and only when that job's caller sent another form (CIDv0 or
   * CIDv1) of the same content than `cid`: the form it sent.
   */
  requested_cid?: string;
}

/** A policy as the API shows it. */
export interface PolicyView {
  name: string;
  /** `sha256:…` of the component. */
  hash: string;
  /** `built-in`, or `file <path>`. */
  source: string;
}

/** `GET /v1/health`. */
export interface Health {
  /** Always `ok` when the daemon answers. */
  status: string;
  policy: PolicyView;
  /** Pins by state; every state is present (0 included). */
  queue: Record<PinState, number>;
  policy_reloads: number;
  node_name: string;
}

/** One node as `GET /v1/nodes` shows it: its live health and circuit breaker. */
export interface NodeStatus {
  name: string;
  role: 'primary' | 'backup' | 'local';
  breaker: 'closed' | 'half-open' | 'open';
  consecutive_failures: number;
  since_last_ok_ms: number | null;
  since_last_failure_ms: number | null;
  recent_ok: number;
  recent_total: number;
  pin_latency_ms: number | null;
  in_flight: number;
  /** How long the node's running pins that report progress have shown none; null when none runs. */
  since_last_progress_ms: number | null;
}

/** `POST /v1/pins`, as sent (the client builds it from {@link SubmitOptions}). */
export interface SubmitRequest {
  cid: string;
  job_id: string;
  size_bytes?: number;
  wait?: boolean;
  timeout_ms?: number;
  notify?: string;
}

/** The daemon's answer bodies, for reference (the client returns what is inside them). */
export interface JobReply {
  job: PinRow;
}
export interface JobsReply {
  jobs: PinRow[];
}
export interface NodesReply {
  nodes: NodeStatus[];
}
/** Every 4xx/5xx answer. */
export interface ErrorReply {
  error: string;
}

export interface ClientOptions {
  /**
   * The daemon's Unix socket. Default: the environment variable PINWARDEN_SOCKET. (The daemon
   * listens on `<data_dir>/pinwarden.sock` unless `daemon.socket` or `--socket` says otherwise;
   * the client cannot guess its data directory.)
   */
  socketPath?: string;
  /** TCP (`pinwarden serve --listen`) instead of the socket. Default 127.0.0.1 with `port`. */
  host?: string;
  port?: number;
  /** Bearer token: every TCP listener requires one; the Unix socket ignores it. */
  token?: string;
  /**
   * Client-side limit for each call, in ms (default 30000; 0: none). A waited submit is given
   * the daemon's wait (its `timeoutMs`, else one hour) plus this.
   */
  timeoutMs?: number;
}

export interface SubmitOptions {
  cid: string;
  /** The encoder's job id (1 to 256 characters); submitting it again is idempotent. */
  jobId: string;
  sizeBytes?: number;
  /**
   * Where the daemon POSTs this job's signed events (a host in its `notify.allowed_hosts`);
   * default: the daemon's `notify.url`. Check each with {@link verifyWebhook}.
   */
  notify?: string;
}

export interface SubmitAndWaitOptions extends SubmitOptions {
  /** How long the daemon waits before answering 504 (the pin goes on). Default: one hour. */
  timeoutMs?: number;
}

export interface JobsOptions {
  state?: PinState;
  /** At most this many (the daemon's default 100, at most 10000). */
  limit?: number;
}

export class PinwardenClient {
  /** Throws a TypeError when no socket is given and PINWARDEN_SOCKET is unset. */
  constructor(options?: ClientOptions);
  /** The socket path, or `host:port`. */
  readonly endpoint: string;
  readonly timeoutMs: number;
  /** Queues the pin (lazy) and returns at once: the daemon answered 202, the job is on disk. */
  submit(options: SubmitOptions): Promise<PinRow>;
  /**
   * Submits and waits for the round's verdict. Resolves with the pin when `pinned`; rejects
   * with {@link PinFailedError} (any other verdict), {@link TimeoutError} (504: the daemon
   * stopped waiting, the pin goes on), {@link UnavailableError} (503: the daemon is stopping,
   * the job stays queued).
   */
  submitAndWait(options: SubmitAndWaitOptions): Promise<PinRow>;
  /** By job id or CID; {@link NotFoundError} when unknown. */
  status(key: string): Promise<PinRow>;
  /** Most recently updated first. */
  jobs(options?: JobsOptions): Promise<PinRow[]>;
  /** Cancels one job id; {@link NotFoundError} when unknown, {@link ConflictError} when ended. */
  cancel(jobId: string): Promise<PinRow>;
  health(): Promise<Health>;
  nodes(): Promise<NodeStatus[]>;
}

export interface PinwardenErrorOptions {
  status?: number;
  body?: unknown;
  cause?: unknown;
}

/** Every failure of a call. */
export class PinwardenError extends Error {
  constructor(message: string, options?: PinwardenErrorOptions);
  /** The HTTP status the daemon answered with; undefined when no answer came. */
  readonly status: number | undefined;
  /** The parsed answer ({@link ErrorReply} for API errors), or its raw text. */
  readonly body: unknown;
}
/** 400: an invalid CID, an empty job id, an unknown state... */
export class BadRequestError extends PinwardenError {
  readonly status: 400;
}
/** 401: missing or wrong bearer token (TCP). */
export class UnauthorizedError extends PinwardenError {
  readonly status: 401;
}
/** 403: the TCP listener does not answer to this Host name (daemon.allowed_hosts). */
export class ForbiddenError extends PinwardenError {
  readonly status: 403;
}
/** 404: no such job id or CID. */
export class NotFoundError extends PinwardenError {
  readonly status: 404;
}
/** 409: the job id belongs to another CID (submit), or the job has already ended (cancel). */
export class ConflictError extends PinwardenError {
  readonly status: 409;
}
/** 503: the daemon is shutting down (a waited job stays queued). */
export class UnavailableError extends PinwardenError {
  readonly status: 503;
}
/** 504: the daemon stopped waiting (the pin goes on); undefined: the client's own timeout. */
export class TimeoutError extends PinwardenError {
  readonly status: 504 | undefined;
}
/** No daemon at the socket (ENOENT), nothing listening (ECONNREFUSED), no permission... */
export class ConnectionError extends PinwardenError {
  constructor(
    message: string,
    options?: PinwardenErrorOptions & { endpoint?: string; code?: string },
  );
  readonly status: undefined;
  /** The socket path, or `host:port`. */
  readonly endpoint: string;
  /** The system error code, e.g. `ENOENT`, `ECONNREFUSED`. */
  readonly code: string | undefined;
}
/** A 2xx answer that is not what the API describes. */
export class ProtocolError extends PinwardenError {}
/** A waited pin whose verdict is not `pinned` (`failed`, `local-fallback`, or still queued). */
export class PinFailedError extends PinwardenError {
  constructor(
    message: string,
    options?: PinwardenErrorOptions & { job?: PinRow; jobId?: string },
  );
  readonly status: 200;
  /** The pin as the daemon answered. */
  readonly job: PinRow;
  readonly jobId: string;
}

/** A completion webhook's body (`host/openapi.json`'s `Event`). */
export interface WebhookEvent {
  /** Unique per event: de-duplicate by it (a delivery can be repeated). */
  id: string;
  type: 'pinned' | 'local-fallback' | 'failed' | 'cancelled';
  job_id: string;
  /** This job's events in the order they happened (1, 2, ...): keep the highest seen. */
  seq: number;
  cid: string;
  /** RFC 3339, UTC, milliseconds. */
  created: string;
  nodes?: string[];
  duration_ms?: number;
  decided_by?: string;
  reason?: string;
  will_retry?: boolean;
  next_attempt_at?: string;
  failed_rounds?: number;
  journal?: Record<string, unknown>;
}

/** A webhook `verifyWebhook` refused. */
export class WebhookVerificationError extends Error {
  reason: 'missing' | 'malformed' | 'stale' | 'mismatch';
}

/**
 * Checks the `Pinwarden-Signature` header of a webhook against the raw body (the bytes as
 * received, before JSON parsing) and the shared secret, and returns the event. Throws
 * {@link WebhookVerificationError} on a missing, malformed or non-matching signature, or a
 * timestamp more than `toleranceMs` (default 300000) from now.
 */
export function verifyWebhook(
  rawBody: Buffer | string,
  headers: Record<string, string | string[] | undefined> | { get(name: string): string | null },
  secret: string | Buffer,
  toleranceMs?: number,
): WebhookEvent;
