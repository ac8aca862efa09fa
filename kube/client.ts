// A small JSON client for the Kubernetes API on the credentials of kubeconfig.ts. Objects stay
// plain JSON exactly as the apiserver sends them, which keeps comparisons and server-side apply
// bodies free of client-side model conversion, and the process free of a generated API client
// (importing one costs tens of MiB of memory for models this project never uses).

import type { IncomingMessage } from 'node:http';
import type { ClientHttp2Session, OutgoingHttpHeaders } from 'node:http2';
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

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  contentType?: string;
  /** The Accept header; JSON by default. */
  accept?: string;
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
 * A request's URL with its query, its JSON payload and the headers that describe them, for either
 * transport (names in lower case, as HTTP/2 requires and HTTP/1.1 accepts).
 */
function requestParts(
  server: URL,
  path: string,
  opts: RequestOptions,
): { url: URL; payload?: string; headers: Record<string, string | number> } {
  const url = new URL(path, server);
  for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
  const headers: Record<string, string | number> = { accept: opts.accept ?? 'application/json' };
  if (opts.body === undefined) return { url, headers };
  const payload = JSON.stringify(opts.body);
  headers['content-type'] = opts.contentType ?? 'application/json';
  headers['content-length'] = Buffer.byteLength(payload);
  return { url, payload, headers };
}

export class KubeClient {
  readonly credentials: Credentials;
  readonly server: URL;
  private observer: ResponseObserver = () => {};
  private readonly h2: H2Connection;

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

  /** Request options with TLS material, the shared keep-alive agent and credentials (re-read each time: tokens rotate). */
  async options(): Promise<https.RequestOptions> {
    const opts: https.RequestOptions = { headers: {} };
    await this.credentials.applyToHTTPSOptions(opts);
    return opts;
  }

  /**
   * Sends a request and resolves with the response once its headers are in, body unread (for
   * lists read item by item, and watches). A status of 300 or more rejects with an ApiError.
   */
  async stream(method: string, path: string, opts: StreamOptions): Promise<IncomingMessage> {
    const { url, payload, headers: content } = requestParts(this.server, path, opts);
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
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error(`${method} ${path}: no complete response within ${timeoutMs} ms`)), timeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, deadline.signal]) : deadline.signal;
    try {
      const session = await this.h2.get().catch((err: unknown) => {
        this.observer(method, undefined, this.server.host);
        throw err;
      });
      if (session) return (await this.requestH2(session, method, path, { ...opts, signal })) as T;
      const res = await this.stream(method, path, { ...opts, signal, idleTimeoutMs: timeoutMs });
      return parseBody(await readBody(res)) as T;
    } catch (err) {
      // Aborting a request rejects with a generic AbortError; the deadline's own reason says more.
      if (deadline.signal.aborted) throw deadline.signal.reason;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private async requestH2(session: ClientHttp2Session, method: string, path: string, opts: RequestOptions): Promise<unknown> {
    const { url, payload, headers: content } = requestParts(this.server, path, opts);
    const options = await this.options();
    const headers: OutgoingHttpHeaders = { ':method': method, ':path': `${url.pathname}${url.search}` };
    // HTTP/2 header names are lower case.
    for (const [k, v] of Object.entries(options.headers ?? {})) headers[k.toLowerCase()] = v as string;
    Object.assign(headers, content);
    let code: number | undefined;
    let body: Buffer;
    this.h2.started();
    try {
      body = await new Promise<Buffer>((resolve, reject) => {
        // Node ends the stream of a GET, HEAD or DELETE at once unless told otherwise; a DELETE may carry options.
        const req = session.request(headers, { endStream: payload === undefined });
        // Not the request's own `signal` option: Node binds a new async resource per request for it,
        // a tenth of a millisecond each.
        const { signal } = opts;
        const abort = () => req.destroy(signal?.reason);
        if (signal?.aborted) abort();
        else signal?.addEventListener('abort', abort, { once: true });
        const chunks: Buffer[] = [];
        req.on('response', (h) => (code = Number(h[':status'])));
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => resolve(Buffer.concat(chunks)));
        req.on('error', reject);
        req.on('close', () => {
          signal?.removeEventListener('abort', abort);
          // Closed without an end (reset by the server, the connection gone): an error for the caller.
          reject(new Error(`${method} ${url.pathname}: stream closed before the response ended`));
        });
        if (payload !== undefined) req.end(payload);
      });
    } catch (err) {
      // A request out of time may be stuck on a dead connection (a half-open link moves nothing
      // and reports nothing): unless the connection answers a ping, later requests get a new one.
      if (opts.signal?.aborted) this.h2.check(session);
      throw err;
    } finally {
      this.h2.finished();
      this.observer(method, code, url.host);
    }
    if (code === undefined || code >= 300) throw new ApiError(method, url.pathname, code ?? 0, parseBody(body));
    return parseBody(body);
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
  apply<T = unknown>(path: string, obj: unknown, fieldManager: string, force = false): Promise<T> {
    return this.request<T>('PATCH', path, {
      query: { fieldManager, force: force || undefined },
      body: obj,
      contentType: 'application/apply-patch+yaml',
    });
  }

  mergePatch<T = unknown>(path: string, patch: unknown, fieldManager?: string): Promise<T> {
    return this.request<T>('PATCH', path, { query: { fieldManager }, body: patch, contentType: 'application/merge-patch+json' });
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
