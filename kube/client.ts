// A small JSON client for the Kubernetes API on the credentials of kubeconfig.ts. Objects stay
// plain JSON exactly as the apiserver sends them, which keeps comparisons and server-side apply
// bodies free of client-side model conversion, and the process free of a generated API client
// (importing one costs tens of MiB of memory for models this project never uses).

import type { IncomingMessage } from 'node:http';
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import https from 'node:https';
import { isIP } from 'node:net';
import tls from 'node:tls';
import type { Credentials } from './kubeconfig.ts';
import { http } from './node-http.ts';

/** A response with a status code of 300 or more; `reason` is the Status reason (`NotFound`, `Expired`...). */
export class ApiError extends Error {
  readonly statusCode: number;
  readonly reason: string;
  readonly body: unknown;
  constructor(method: string, path: string, statusCode: number, body: unknown) {
    const status = body as { message?: string; reason?: string } | undefined;
    super(`${method} ${path}: ${statusCode} ${status?.message ?? String(body).slice(0, 300)}`);
    this.statusCode = statusCode;
    this.reason = status?.reason ?? '';
    this.body = body;
  }
}

export function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiError && err.statusCode === code;
}

/**
 * Told of every request once its outcome is known: the method, the status code (undefined when
 * no response came) and the server's host, as client-go's rest_client_requests_total labels them.
 * A stream that fails after its response was counted with its status.
 */
export type ResponseObserver = (method: string, code: number | undefined, host: string) => void;

/**
 * Accept header asking for an object's metadata only (a PartialObjectMetadata), for writes whose
 * caller reads nothing else of the answer: the apiserver transforms the answer to a create,
 * update, patch or delete too, which saves parsing the spec and status (a third of a Deployment
 * that was just created; more of a large object). A server that cannot answers with the whole
 * object, which carries the same metadata.
 */
export const ACCEPT_METADATA = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json';

/** True when `obj` is a metadata-only answer (ACCEPT_METADATA) rather than the whole object. */
export function isMetadataOnly(obj: { kind?: string } | undefined): boolean {
  return obj?.kind === 'PartialObjectMetadata';
}

export type Query = Record<string, string | number | boolean | undefined>;

/**
 * What of a request's answer the caller reads: `whole` (the default), `metadata` (asks for
 * metadata only, ACCEPT_METADATA), or `none` (metadata asked for, and the body of a successful
 * answer is not parsed; an error's still is, for its message).
 */
export type Answer = 'whole' | 'metadata' | 'none';

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  contentType?: string;
  /** The Accept header; JSON by default, metadata only for an `answer` of `metadata` or `none`. */
  accept?: string;
  answer?: Answer;
  signal?: AbortSignal;
  /** Bound on the whole request, response body included. */
  timeoutMs?: number;
}

export interface StreamOptions extends Omit<RequestOptions, 'timeoutMs'> {
  /** Bound on any silence: waiting for the response, and between two chunks of its body. */
  idleTimeoutMs: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** After a server declined HTTP/2, requests use HTTP/1.1 this long before it is offered again. */
const H2_DECLINED_RETRY_MS = 10 * 60_000;
const H2_PING_TIMEOUT_MS = 5_000;
/**
 * Credentials are applied again (a token file read again) at most this often, and after any 401.
 * A rotated ServiceAccount token is written well before the old one expires, so a few seconds of
 * delay never sends an expired token; reading the file for every request cost a system call or
 * four per write.
 */
const CREDENTIALS_REFRESH_MS = 5_000;

const EMPTY = Buffer.alloc(0);

async function readBody(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function parseBody(body: Buffer): unknown {
  const text = body.toString('utf8');
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return text; // not JSON: kept as text for the error message
  }
}

/**
 * A request's target (path and query, the form an HTTP/2 `:path` takes), its JSON payload and the
 * headers that describe them, for either transport (names in lower case, as HTTP/2 requires and
 * HTTP/1.1 accepts). Built as a string: parsing a URL and serialising its search parameters per
 * request cost more than the rest of this function.
 */
function requestParts(path: string, opts: RequestOptions): { target: string; payload?: string; headers: Record<string, string | number> } {
  let target = path;
  let separator = path.includes('?') ? '&' : '?';
  const query = opts.query;
  if (query)
    for (const k of Object.keys(query)) {
      const v = query[k];
      if (v === undefined) continue;
      target += `${separator}${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`;
      separator = '&';
    }
  const accept = opts.accept ?? (opts.answer === 'metadata' || opts.answer === 'none' ? ACCEPT_METADATA : 'application/json');
  const headers: Record<string, string | number> = { accept };
  if (opts.body === undefined) return { target, headers };
  const payload = JSON.stringify(opts.body);
  headers['content-type'] = opts.contentType ?? 'application/json';
  headers['content-length'] = Buffer.byteLength(payload);
  return { target, payload, headers };
}

/** The path of a request target, for messages. */
function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

/** What the credentials gave at one moment: TLS options and headers as given, and the headers in lower case for HTTP/2. */
interface AppliedCredentials {
  at: number;
  options: https.RequestOptions;
  h2Headers: Record<string, string>;
}

export class KubeClient {
  readonly credentials: Credentials;
  readonly server: URL;
  private observer: ResponseObserver = () => {};
  private readonly h2: H2Connection;
  private applied?: AppliedCredentials;
  private applying?: Promise<AppliedCredentials>;

  /**
   * `http2: false` sends every request over HTTP/1.1 and never loads Node's HTTP/2 module: for a
   * program that sends a request now and then besides its streams, the module costs more memory
   * (~4–6 MiB of RSS) than multiplexing saves.
   */
  constructor(credentials: Credentials, opts: { http2?: boolean } = {}) {
    this.credentials = credentials;
    this.server = new URL(credentials.server);
    this.h2 = new H2Connection(this.server, () => this.options(), opts.http2 ?? true);
  }

  /** Closes the HTTP/2 connection (requests in flight finish first); a later request opens another. */
  close(): void {
    this.h2.close();
  }

  setResponseObserver(observer: ResponseObserver): void {
    this.observer = observer;
  }

  /**
   * Request options with TLS material, the shared keep-alive agent and credentials. A fresh
   * object each time (callers add headers); the credentials behind it are applied again at most
   * every CREDENTIALS_REFRESH_MS and after a 401 (tokens rotate).
   */
  async options(): Promise<https.RequestOptions> {
    const { options } = this.appliedNow() ?? (await this.applyCredentials());
    return { ...options, headers: { ...(options.headers as Record<string, string>) } };
  }

  /** The credentials as last applied, while recent enough; undefined when they must be applied again. */
  private appliedNow(): AppliedCredentials | undefined {
    const a = this.applied;
    return a && performance.now() - a.at < CREDENTIALS_REFRESH_MS ? a : undefined;
  }

  private applyCredentials(): Promise<AppliedCredentials> {
    this.applying ??= (async () => {
      const options: https.RequestOptions = { headers: {} };
      await this.credentials.applyToHTTPSOptions(options);
      const h2Headers: Record<string, string> = {};
      // HTTP/2 header names are lower case.
      for (const [k, v] of Object.entries(options.headers as Record<string, string>)) h2Headers[k.toLowerCase()] = v;
      this.applied = { at: performance.now(), options, h2Headers };
      return this.applied;
    })().finally(() => (this.applying = undefined));
    return this.applying;
  }

  /** A 401: the token may have rotated; the next request applies the credentials again. */
  private noteStatus(code: number | undefined): void {
    if (code === 401) this.applied = undefined;
  }

  /**
   * Sends a request and resolves with the response once its headers are in, body unread (for
   * lists read item by item, and watches). A status of 300 or more rejects with an ApiError.
   */
  async stream(method: string, path: string, opts: StreamOptions): Promise<IncomingMessage> {
    const { target, payload, headers: content } = requestParts(path, opts);
    const url = new URL(target, this.server);
    const options = await this.options();
    Object.assign(options.headers as Record<string, string | number>, content);
    const send = url.protocol === 'https:' ? https.request : http.request;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      let response: IncomingMessage | undefined;
      const req = send(url, { ...options, method, signal: opts.signal }, (r) => resolve((response = r)));
      // The socket's inactivity timer: it covers waiting for the response and, as long as the
      // response is read, every pause between chunks. A half-open connection (peer gone without
      // a FIN or RST) is only ever noticed this way.
      req.setTimeout(opts.idleTimeoutMs, () => {
        const err = new Error(`${method} ${url.pathname}: no data from the apiserver for ${opts.idleTimeoutMs} ms`);
        response?.destroy(err); // the reader of the body gets this error rather than a bare "aborted"
        req.destroy(err);
      });
      req.on('error', reject);
      req.end(payload);
    }).catch((err: unknown) => {
      this.observer(method, undefined, url.host);
      throw err;
    });
    const code = res.statusCode ?? 0;
    this.observer(method, code, url.host);
    this.noteStatus(code);
    if (code >= 300) throw new ApiError(method, url.pathname, code, parseBody(await readBody(res)));
    return res;
  }

  /**
   * A request whose JSON response body is parsed and returned. Over HTTPS these share one
   * multiplexed HTTP/2 connection (as client-go's do): with HTTP/1.1 each request in flight needs
   * a connection of its own, so a burst of writes opens dozens, each with a TLS handshake, and
   * every request costs about twice the client CPU (measured in the README's benchmarks).
   * Watches and streamed lists stay on HTTP/1.1 (`stream`).
   */
  async request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = performance.now() + timeoutMs;
    const session = await this.h2.get().catch((err: unknown) => {
      this.observer(method, undefined, this.server.host);
      throw err;
    });
    if (session) return (await this.requestH2(session, method, path, opts, deadline)) as T;
    const expired = new AbortController();
    const timer = setTimeout(
      () => expired.abort(new Error(`${method} ${path}: no complete response within ${timeoutMs} ms`)),
      deadline - performance.now(),
    );
    const signal = opts.signal ? AbortSignal.any([opts.signal, expired.signal]) : expired.signal;
    try {
      const res = await this.stream(method, path, { ...opts, signal, idleTimeoutMs: timeoutMs });
      const body = await readBody(res);
      return (opts.answer === 'none' ? undefined : parseBody(body)) as T;
    } catch (err) {
      // Aborting a request rejects with a generic AbortError; the deadline's own reason says more.
      if (expired.signal.aborted) throw expired.signal.reason;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One request on the HTTP/2 connection, settled when its stream closes. Kept lean, as every
   * write goes through here: the credentials' headers as last applied, one timer for the deadline
   * (no AbortController and listener per request), a listener on the caller's signal only when
   * there is one, and the body kept as the buffer it arrived in when it came in one piece.
   */
  private async requestH2(
    session: ClientHttp2Session,
    method: string,
    path: string,
    opts: RequestOptions,
    deadline: number,
  ): Promise<unknown> {
    const { target, payload, headers: content } = requestParts(path, opts);
    const { h2Headers } = this.appliedNow() ?? (await this.applyCredentials());
    const headers: OutgoingHttpHeaders = { ':method': method, ':path': target, ...h2Headers, ...content };
    const host = this.server.host;
    this.h2.started();
    return new Promise<unknown>((resolve, reject) => {
      let req: ClientHttp2Stream;
      try {
        // Node ends the stream of a GET, HEAD or DELETE at once unless told otherwise; a DELETE may carry options.
        req = session.request(headers, { endStream: payload === undefined });
      } catch (err) {
        // The session is closing (a GOAWAY came in meanwhile): no stream, no response.
        this.h2.finished();
        this.observer(method, undefined, host);
        reject(err);
        return;
      }
      let code: number | undefined;
      let first: Buffer | undefined;
      let more: Buffer[] | undefined;
      let error: unknown;
      // Set when the request ran out of time or its caller gave up: the connection may be dead.
      let stopped: Error | undefined;
      const stop = (err: Error) => {
        stopped = err;
        req.destroy(err);
      };
      const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const timer = setTimeout(
        () => stop(new Error(`${method} ${path}: no complete response within ${timeoutMs} ms`)),
        Math.max(0, deadline - performance.now()),
      );
      // Not the request's own `signal` option, which Node wraps in another listener and async resource.
      const { signal } = opts;
      const abort = () => stop(signal?.reason instanceof Error ? signal.reason : new Error(`${method} ${path}: aborted`));
      if (signal?.aborted) abort();
      else signal?.addEventListener('abort', abort, { once: true });
      // Listeners return nothing: Node's emit does more work for a listener that returns a value.
      req.on('response', (h) => {
        code = Number(h[':status']);
      });
      req.on('data', (c: Buffer) => {
        if (first === undefined) first = c;
        else (more ??= [first]).push(c);
      });
      req.on('error', (err) => {
        error ??= err;
      });
      req.on('close', () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', abort);
        this.h2.finished();
        this.observer(method, code, host);
        this.noteStatus(code);
        if (!req.readableEnded || stopped) {
          // A request out of time may be stuck on a dead connection (a half-open link moves
          // nothing and reports nothing): unless the connection answers a ping, later requests
          // get a new one.
          if (stopped) this.h2.check(session);
          // Closed without an end (reset by the server, the connection gone): an error for the caller.
          reject(stopped ?? error ?? new Error(`${method} ${pathOf(target)}: stream closed before the response ended`));
          return;
        }
        const body = more ? Buffer.concat(more) : (first ?? EMPTY);
        if (code === undefined || code >= 300) reject(new ApiError(method, pathOf(target), code ?? 0, parseBody(body)));
        else resolve(opts.answer === 'none' ? undefined : parseBody(body));
      });
      if (payload !== undefined) req.end(payload);
    });
  }

  get<T = unknown>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, { query });
  }

  post<T = unknown>(path: string, body: unknown, query?: Query): Promise<T> {
    return this.request<T>('POST', path, { query, body });
  }

  put<T = unknown>(path: string, body: unknown, query?: Query): Promise<T> {
    return this.request<T>('PUT', path, { query, body });
  }

  delete<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('DELETE', path, { body });
  }

  /** Server-side apply of a whole object as `fieldManager`. */
  apply<T = unknown>(path: string, obj: unknown, fieldManager: string, force = false, answer?: Answer): Promise<T> {
    return this.request<T>('PATCH', path, {
      query: { fieldManager, force: force || undefined },
      body: obj,
      contentType: 'application/apply-patch+yaml',
      answer,
    });
  }

  mergePatch<T = unknown>(path: string, patch: unknown, fieldManager?: string, answer?: Answer): Promise<T> {
    return this.request<T>('PATCH', path, { query: { fieldManager }, body: patch, contentType: 'application/merge-patch+json', answer });
  }
}

/**
 * The HTTP/2 connection of a client: opened on first use, re-opened after it ends (the server
 * closed it, a GOAWAY, a network error). A server that does not offer HTTP/2 (TLS ALPN) is
 * remembered, and requests go over HTTP/1.1. The connection holds the process open only while
 * requests are in flight, like the keep-alive sockets of an HTTP/1.1 agent.
 */
class H2Connection {
  private readonly server: URL;
  private readonly tlsOptions: () => Promise<https.RequestOptions>;
  private current?: Promise<ClientHttp2Session | undefined>;
  private live?: ClientHttp2Session;
  private declinedAt = Number.NEGATIVE_INFINITY;
  private inFlight = 0;
  private readonly enabled: boolean;

  constructor(server: URL, tlsOptions: () => Promise<https.RequestOptions>, enabled: boolean) {
    this.server = server;
    this.tlsOptions = tlsOptions;
    this.enabled = enabled;
  }

  /** The open session, a new one, or undefined: use HTTP/1.1 (plain HTTP, HTTP/2 off or declined). */
  get(): Promise<ClientHttp2Session | undefined> {
    if (!this.enabled || this.server.protocol !== 'https:' || Date.now() - this.declinedAt < H2_DECLINED_RETRY_MS)
      return Promise.resolve(undefined);
    if (this.live && !this.live.closed && !this.live.destroyed) return Promise.resolve(this.live);
    this.current ??= this.open().finally(() => (this.current = undefined));
    return this.current;
  }

  started(): void {
    if (this.inFlight++ === 0) this.live?.ref();
  }

  finished(): void {
    if (--this.inFlight === 0) this.live?.unref();
  }

  close(): void {
    this.live?.close();
    this.live = undefined;
  }

  /** Ends `session` unless it answers a ping within H2_PING_TIMEOUT_MS. */
  check(session: ClientHttp2Session): void {
    if (session.destroyed) return;
    const timer = setTimeout(() => session.destroy(new Error('no answer to an HTTP/2 ping')), H2_PING_TIMEOUT_MS);
    timer.unref();
    session.ping((err) => {
      if (!err) clearTimeout(timer);
    });
  }

  private async open(): Promise<ClientHttp2Session | undefined> {
    const o = await this.tlsOptions();
    const host = this.server.hostname.replace(/^\[(.*)\]$/, '$1');
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({
        host,
        port: Number(this.server.port || 443),
        ca: o.ca,
        cert: o.cert,
        key: o.key,
        rejectUnauthorized: o.rejectUnauthorized,
        servername: o.servername ?? (isIP(host) ? undefined : host),
        ALPNProtocols: ['h2', 'http/1.1'],
      });
      s.setTimeout(DEFAULT_TIMEOUT_MS, () =>
        s.destroy(new Error(`${this.server.host}: no TLS connection within ${DEFAULT_TIMEOUT_MS} ms`)),
      );
      s.once('secureConnect', () => {
        s.setTimeout(0);
        resolve(s);
      });
      s.once('error', reject);
    });
    if (socket.alpnProtocol !== 'h2') {
      socket.destroy();
      this.declinedAt = Date.now();
      return undefined;
    }
    // Loaded on first use, not imported: a client that never opens a session never loads it.
    const http2 = process.getBuiltinModule('node:http2');
    const session = http2.connect(this.server, { createConnection: () => socket });
    session.on('error', () => {}); // each request in flight gets the error
    const forget = () => {
      if (this.live === session) this.live = undefined;
    };
    session.once('close', forget);
    session.once('goaway', forget);
    if (this.inFlight === 0) session.unref();
    this.live = session;
    return session;
  }
}
