// A small JSON client for the Kubernetes API on the credentials of kubeconfig.ts. Objects stay
// plain JSON exactly as the apiserver sends them, which keeps comparisons and server-side apply
// bodies free of client-side model conversion, and the process free of a generated API client
// (importing one costs tens of MiB of memory for models this project never uses).

import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Credentials } from './kubeconfig.ts';

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

export class KubeClient {
  readonly credentials: Credentials;
  readonly server: URL;
  private observer: ResponseObserver = () => {};

  constructor(credentials: Credentials) {
    this.credentials = credentials;
    this.server = new URL(credentials.server);
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
    const url = new URL(path, this.server);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const options = await this.options();
    const headers = options.headers as Record<string, string | number>;
    headers.Accept = opts.accept ?? 'application/json';
    let payload: string | undefined;
    if (opts.body !== undefined) {
      payload = JSON.stringify(opts.body);
      headers['Content-Type'] = opts.contentType ?? 'application/json';
      headers['Content-Length'] = Buffer.byteLength(payload);
    }
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

  /** A request whose JSON response body is parsed and returned. */
  async request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error(`${method} ${path}: no complete response within ${timeoutMs} ms`)), timeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, deadline.signal]) : deadline.signal;
    try {
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
