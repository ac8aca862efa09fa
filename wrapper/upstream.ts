// The upstream side: a small reflector (list, then watch from the list's resourceVersion; relist
// on 410 or when a re-watch cannot resume) over plain HTTP requests. client-node's informer hides
// resourceVersion and 410 handling, which the wrapper needs to control; credentials come from
// kubeconfig.ts (client-node itself is too heavy for a per-node process).
import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { Logger } from 'pino';
import { type SplitList, splitList } from './jsonlist.ts';
import type { UpstreamCredentials } from './kubeconfig.ts';
import { groupVersionPath, type KubeObject, objectKey, type ResourceSpec } from './resources.ts';

export class UpstreamError extends Error {
  readonly code: number;
  constructor(message: string, code: number) {
    super(message);
    this.code = code;
  }
}

export class Upstream {
  readonly credentials: UpstreamCredentials;
  readonly server: URL;
  constructor(credentials: UpstreamCredentials) {
    this.credentials = credentials;
    this.server = new URL(credentials.server);
  }

  /** Request options with TLS material and credentials (re-read each time: tokens rotate). */
  async options(): Promise<RequestOptions> {
    const opts: RequestOptions = { headers: {} };
    await this.credentials.applyToHTTPSOptions(opts);
    return opts;
  }

  async get(path: string, signal?: AbortSignal, idleTimeoutMs = 60_000): Promise<IncomingMessage> {
    const opts = await this.options();
    const url = new URL(path, this.server);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, { ...opts, method: 'GET', headers: { ...opts.headers, Accept: 'application/json' }, signal }, resolve);
      req.setTimeout(idleTimeoutMs, () => req.destroy(new Error(`no data from upstream for ${idleTimeoutMs} ms: ${path}`)));
      req.on('error', reject);
      req.end();
    });
  }

  private async getBody(path: string, signal?: AbortSignal): Promise<Buffer> {
    const res = await this.get(path, signal);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    if (res.statusCode !== 200) {
      let message = body.toString('utf8', 0, 500);
      try {
        message = JSON.parse(body.toString()).message ?? message;
      } catch {}
      throw new UpstreamError(`GET ${path}: ${res.statusCode} ${message}`, res.statusCode ?? 0);
    }
    return body;
  }

  async getJSON<T>(path: string, signal?: AbortSignal): Promise<T> {
    return JSON.parse((await this.getBody(path, signal)).toString()) as T;
  }

  /** A list whose items are parsed one at a time, as they are consumed. */
  async getList<T>(path: string, signal?: AbortSignal): Promise<SplitList<T>> {
    return splitList<T>(await this.getBody(path, signal));
  }
}

/**
 * managedFields are bookkeeping for server-side apply; no client of the wrapper reads them, and
 * they are often the largest part of a small object, so they are not kept.
 */
function withoutManagedFields(obj: KubeObject): KubeObject {
  if (!obj.metadata?.managedFields) return obj;
  // Rebuilt rather than `delete`d: deleting a property turns the object into a slow dictionary.
  const { managedFields: _dropped, ...metadata } = obj.metadata;
  obj.metadata = metadata;
  return obj;
}

export interface ReflectorSink {
  upsert(resource: string, obj: KubeObject): void;
  delete(resource: string, obj: KubeObject): void;
}

export interface ReflectorMetrics {
  relist(resource: string): void;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

class Expired extends Error {}

export class Reflector {
  readonly spec: ResourceSpec;
  private readonly upstream: Upstream;
  private readonly sink: ReflectorSink;
  private readonly log: Logger;
  private readonly metrics: ReflectorMetrics | undefined;
  /** Keys of the objects delivered to the sink: the sink keeps what it needs of them. */
  private readonly known = new Set<string>();
  private rv = '';
  private readonly abort = new AbortController();
  private syncedResolve!: () => void;
  /** Resolves after the first complete list has been delivered to the sink. */
  readonly synced: Promise<void> = new Promise((r) => {
    this.syncedResolve = r;
  });
  private hasSynced = false;

  constructor(spec: ResourceSpec, upstream: Upstream, sink: ReflectorSink, log: Logger, metrics?: ReflectorMetrics) {
    this.spec = spec;
    this.upstream = upstream;
    this.sink = sink;
    this.log = log.child({ resource: spec.resource });
    this.metrics = metrics;
  }

  get isSynced(): boolean {
    return this.hasSynced;
  }

  private get path(): string {
    return `${groupVersionPath(this.spec)}/${this.spec.resource}`;
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.abort.abort();
  }

  private async run(): Promise<void> {
    let needList = true;
    let backoff = 250;
    while (!this.abort.signal.aborted) {
      try {
        if (needList) {
          await this.relist();
          needList = false;
        }
        await this.watchOnce();
        backoff = 250;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (err instanceof Expired) {
          this.log.info({ rv: this.rv }, 'upstream watch expired; relisting');
          needList = true;
          continue;
        }
        this.log.warn({ err: (err as Error).message, rv: this.rv }, 'upstream list/watch failed; retrying');
        await sleep(backoff, this.abort.signal);
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }

  /** Lists and delivers the difference to what the sink already has, deletions included. */
  private async relist(): Promise<void> {
    const list = await this.upstream.getList<KubeObject>(this.path, this.abort.signal);
    if (this.hasSynced) this.metrics?.relist(this.spec.resource);
    const seen = new Set<string>();
    for (const item of list.items()) {
      const key = objectKey(item);
      seen.add(key);
      this.known.add(key);
      this.sink.upsert(this.spec.resource, withoutManagedFields(item));
    }
    for (const key of this.known) {
      if (seen.has(key)) continue;
      this.known.delete(key);
      this.log.info({ object: key }, 'object deleted while not watching; removing');
      const slash = key.indexOf('/');
      const metadata = slash < 0 ? { name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
      this.sink.delete(this.spec.resource, { metadata });
    }
    this.rv = list.head.metadata?.resourceVersion ?? '';
    this.log.debug({ rv: this.rv, count: seen.size }, 'listed');
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.syncedResolve();
    }
  }

  private async watchOnce(): Promise<void> {
    const timeout = 240 + Math.floor(Math.random() * 120);
    const q = new URLSearchParams({
      watch: 'true',
      resourceVersion: this.rv,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(timeout),
    });
    const res = await this.upstream.get(`${this.path}?${q}`, this.abort.signal, 150_000);
    if (res.statusCode === 410) {
      res.resume();
      throw new Expired();
    }
    if (res.statusCode !== 200) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      throw new UpstreamError(
        `watch ${this.path}: ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 300)}`,
        res.statusCode ?? 0,
      );
    }
    let buf = '';
    res.setEncoding('utf8');
    for await (const chunk of res) {
      buf += chunk as string;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) this.handle(JSON.parse(line));
      }
    }
  }

  private handle(ev: { type: string; object: KubeObject & { code?: number; message?: string } }): void {
    const obj = ev.object;
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED': {
        this.known.add(objectKey(obj));
        this.sink.upsert(this.spec.resource, withoutManagedFields(obj));
        break;
      }
      case 'DELETED': {
        this.known.delete(objectKey(obj));
        this.sink.delete(this.spec.resource, obj);
        break;
      }
      case 'BOOKMARK':
        break;
      case 'ERROR':
        if (obj.code === 410) throw new Expired();
        throw new UpstreamError(`watch ${this.path}: ERROR ${obj.code} ${obj.message}`, obj.code ?? 0);
      default:
        throw new UpstreamError(`watch ${this.path}: unknown event type ${ev.type}`, 0);
    }
    if (obj.metadata?.resourceVersion) this.rv = obj.metadata.resourceVersion;
  }
}
