// A small JSON client for the Kubernetes API on top of client-node's KubeConfig (credentials, TLS,
// in-cluster token). Objects stay plain JSON exactly as the apiserver sends them, which keeps
// comparisons and server-side apply bodies free of client-side model conversion.

import http from 'node:http';
import https from 'node:https';
import type * as k8s from '@kubernetes/client-node';

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

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export class KubeClient {
  readonly kubeConfig: k8s.KubeConfig;
  readonly server: URL;
  private agent: http.Agent | undefined;
  private onResponse: (method: string, code: number | undefined, host: string) => void = () => {};

  constructor(kubeConfig: k8s.KubeConfig) {
    this.kubeConfig = kubeConfig;
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
  }

  /** Called for every answer (status code) or failure (undefined) of a request, for metrics. */
  setResponseObserver(fn: (method: string, code: number | undefined, host: string) => void): void {
    this.onResponse = fn;
  }

  private async open(method: string, path: string, opts: RequestOptions): Promise<http.IncomingMessage> {
    const url = new URL(path, this.server);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const options: https.RequestOptions = {
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port,
      path: `${url.pathname}${url.search}`,
      headers: { accept: 'application/json' },
    };
    await this.kubeConfig.applyToHTTPSOptions(options);
    // applyToHTTPSOptions makes a fresh agent per call (a TLS handshake per request); TLS settings
    // do not change for a kubeconfig, so one keep-alive agent made from them serves every request.
    this.agent ??=
      url.protocol === 'https:'
        ? new https.Agent({
            keepAlive: true,
            ca: options.ca,
            cert: options.cert,
            key: options.key,
            servername: options.servername,
            ...(options.rejectUnauthorized !== undefined ? { rejectUnauthorized: options.rejectUnauthorized } : {}),
          })
        : new http.Agent({ keepAlive: true });
    options.agent = this.agent;
    let payload: string | undefined;
    if (opts.body !== undefined) {
      payload = JSON.stringify(opts.body);
      options.headers = {
        ...options.headers,
        'content-type': opts.contentType ?? 'application/json',
        'content-length': Buffer.byteLength(payload),
      };
    }
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = mod.request(options, (res) => {
        answered = true;
        this.onResponse(method, res.statusCode, url.host);
        resolve(res);
      });
      req.on('error', (err) => {
        // An error after the response (e.g. a watch cut mid-stream) was counted with its status.
        if (!answered) this.onResponse(method, undefined, url.host);
        reject(err);
      });
      if (opts.timeoutMs)
        req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`${method} ${path}: timed out after ${opts.timeoutMs}ms`)));
      if (opts.signal) {
        if (opts.signal.aborted) req.destroy(new Error('aborted'));
        opts.signal.addEventListener('abort', () => req.destroy(new Error('aborted')), { once: true });
      }
      req.end(payload);
    });
  }

  async request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.open(method, path, { timeoutMs: 30_000, ...opts });
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text for the error message
    }
    if ((res.statusCode ?? 0) >= 300) throw new ApiError(method, path, res.statusCode ?? 0, body);
    return body as T;
  }

  get<T = unknown>(path: string, query?: RequestOptions['query']): Promise<T> {
    return this.request<T>('GET', path, { query });
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

  /**
   * A watch stream: calls `onEvent` for each `{type, object}` line until the server ends the
   * stream, `signal` aborts it, or an error occurs (rejects).
   */
  async watch(
    path: string,
    query: RequestOptions['query'],
    onEvent: (e: { type: string; object: any }) => void,
    signal: AbortSignal,
    onOpen?: () => void,
  ): Promise<void> {
    const res = await this.open('GET', path, { query: { ...query, watch: true }, signal });
    if ((res.statusCode ?? 0) >= 300) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      let body: unknown = Buffer.concat(chunks).toString('utf8');
      try {
        body = JSON.parse(body as string);
      } catch {}
      throw new ApiError('WATCH', path, res.statusCode ?? 0, body);
    }
    onOpen?.();
    let buffered = '';
    res.setEncoding('utf8');
    for await (const chunk of res) {
      buffered += chunk;
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) onEvent(JSON.parse(line));
        nl = buffered.indexOf('\n');
      }
    }
  }
}

/** REST path of a resource collection or object. `group` '' is the core group. */
export function resourcePath(
  r: { group: string; version: string; plural: string },
  namespace?: string,
  name?: string,
  sub?: string,
): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  let p = namespace ? `${base}/namespaces/${encodeURIComponent(namespace)}/${r.plural}` : `${base}/${r.plural}`;
  if (name) p += `/${encodeURIComponent(name)}`;
  if (sub) p += `/${sub}`;
  return p;
}
