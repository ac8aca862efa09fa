// The list/watch loop behind every cache of both programs. It lists (page by page; from the
// apiserver's watch cache at start), then watches from the list's resourceVersion with bookmarks,
// re-watches from the last version seen when a watch ends, and relists when that version has
// expired (410, as a status or as an ERROR event). A relist delivers the difference to what was
// delivered before, deletions included. A watch that stays silent longer than the apiserver's
// bookmark period is taken for a half-open connection and re-opened; failures back off with jitter.
//
// What is delivered goes to a sink: the controller's informer keeps objects and calls handlers,
// the wrapper's view keeps only what it serves.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { ApiError, isStatus, type KubeClient } from './client.ts';
import { releasePage, splitList } from './jsonlist.ts';
import { LineSplitter } from './lines.ts';
import { type GroupVersionResource, type KubeObject, objectKey, resourcePath } from './objects.ts';

export interface ReflectorSink {
  upsert(resource: string, obj: KubeObject): void;
  delete(resource: string, obj: KubeObject): void;
}

export interface ReflectorMetrics {
  relist(resource: string): void;
}

export interface ReflectorOptions {
  labelSelector?: string;
  /** e.g. `metadata.name=<node>`: a program that needs one object does not receive every object's changes. */
  fieldSelector?: string;
  /**
   * Objects as PartialObjectMetadata (apiVersion, kind, metadata): for caches that only need
   * names and labels, at a fraction of the memory and bandwidth.
   */
  metadataOnly?: boolean;
  /**
   * Reduces each object to what the sink needs before it is delivered (e.g. a Node to its labels
   * and Ready condition): a cache of thousands of full objects is then a cache of small ones.
   */
  keep?: (obj: KubeObject) => KubeObject;
  /** Items per list page. */
  pageSize?: number;
  /**
   * List page by page with consistent reads instead of from the apiserver's watch cache. The
   * cache ignores `limit` and answers with the whole collection in one body: ~100 MB for 10,000
   * Nodes with a kubelet's status, all of it in memory at once. For a single client (the
   * controller) listing a large collection; a program that runs on every node (the wrapper) keeps
   * the cache, so that thousands of them starting together do not read etcd.
   */
  pagedLists?: boolean;
  /**
   * A watch with no data for this long is re-opened. The apiserver sends a bookmark about every
   * minute to watches that ask for them, so a silent connection is a dead one.
   */
  watchIdleTimeoutMs?: number;
  /** The first list starts after a random delay below this, so that programs started together spread their lists. */
  startJitterMs?: number;
  /** A failed list or watch is retried after a random delay below min(this, 250 ms × 2^failures); default 5 s. */
  maxBackoffMs?: number;
  /**
   * A relist after an expired resourceVersion starts after a random delay below this, so that
   * clients cut off together (a site whose link returns) do not all list at the same moment.
   */
  relistJitterMs?: number;
  /**
   * The resource may not be served by this apiserver (an API newer than the cluster, such as
   * networking.k8s.io/v1 ServiceCIDRs before Kubernetes 1.33): a list answered 404 then counts as
   * an empty collection, so the cache is synced (and loses what it held), and the list is tried
   * again this often. Without it a 404 is retried as a failure and the cache never syncs.
   */
  absentRecheckMs?: number;
  /** Told when the apiserver answers a list or watch (true) and when one fails (false). */
  onContact?: (reached: boolean) => void;
  metrics?: ReflectorMetrics;
}

const DEFAULT_PAGE_SIZE = 500;
const DEFAULT_WATCH_IDLE_TIMEOUT_MS = 150_000;
const LIST_IDLE_TIMEOUT_MS = 60_000;
const MIN_BACKOFF_MS = 250;
// Short enough that a node back from an outage catches up within seconds; full jitter spreads the retries.
const MAX_BACKOFF_MS = 5_000;
/** Server-side watch lifetime, spread like client-go's (5 to 10 minutes) so that re-watches do not bunch up. */
const watchTimeoutSeconds = () => 300 + Math.floor(Math.random() * 300);

const ACCEPT_JSON = 'application/json';
const ACCEPT_METADATA_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json';
const ACCEPT_METADATA = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json';

/** The resourceVersion the reflector resumes from has been compacted away: relist. */
export class Expired extends Error {}

const isExpired = (err: unknown) => err instanceof Expired || (err instanceof ApiError && err.statusCode === 410);

/** Waits `ms`, or less if `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * managedFields are bookkeeping for server-side apply; nothing in this project reads them, and
 * they are often the largest part of a small object, so they are not kept.
 */
function withoutManagedFields(obj: KubeObject): KubeObject {
  if (!obj.metadata?.managedFields) return obj;
  // Rebuilt rather than `delete`d: deleting a property turns the object into a slow dictionary.
  const { managedFields: _dropped, ...metadata } = obj.metadata;
  obj.metadata = metadata;
  return obj;
}

interface WatchEvent {
  type: string;
  object: KubeObject & { code?: number; message?: string };
}

export class Reflector {
  readonly resource: GroupVersionResource;
  private readonly client: KubeClient;
  private readonly sink: ReflectorSink;
  private readonly log: Logger;
  private readonly opts: ReflectorOptions;
  /** Keys of the objects delivered to the sink: a relist deletes those no longer listed. */
  private readonly known = new Set<string>();
  private rv = '';
  /** Since when every list/watch attempt has failed (undefined while they succeed), and the last error. */
  private failure: { since: number; err: Error } | undefined;
  private loopEnded = false;
  /** Set when a list from the watch cache failed with 410: the next list is a consistent read. */
  private listFromStorage = false;
  private readonly abort = new AbortController();
  private hasSynced = false;
  /** The last list found the resource not served (absentRecheckMs). */
  private absent = false;
  private syncedResolve!: () => void;
  /** Resolves after the first complete list has been delivered to the sink. */
  readonly synced: Promise<void> = new Promise((r) => {
    this.syncedResolve = r;
  });

  constructor(resource: GroupVersionResource, client: KubeClient, sink: ReflectorSink, log: Logger, options: ReflectorOptions = {}) {
    this.resource = resource;
    this.client = client;
    this.sink = sink;
    this.log = log.child({ resource: resource.resource });
    this.opts = options;
  }

  private reduce(obj: KubeObject): KubeObject {
    return this.opts.keep ? this.opts.keep(obj) : withoutManagedFields(obj);
  }

  private get path(): string {
    return resourcePath(this.resource);
  }

  start(): void {
    this.run().then(
      () => (this.loopEnded = !this.abort.signal.aborted),
      (err) => {
        this.loopEnded = true;
        this.log.error({ err }, 'list/watch loop ended');
      },
    );
  }

  /** True while the last list/watch attempt failed. */
  get failing(): boolean {
    return this.failure !== undefined;
  }

  /**
   * Why this reflector's data cannot be trusted, or undefined: its loop ended, or its list/watch
   * attempts have failed without a success for longer than `graceMs`.
   */
  problem(now: number, graceMs: number): string | undefined {
    if (this.loopEnded) return 'list/watch loop ended';
    if (this.failure && now - this.failure.since > graceMs)
      return `list/watch failing for ${Math.round((now - this.failure.since) / 1000)}s: ${this.failure.err.message}`;
    return undefined;
  }

  stop(): void {
    this.abort.abort();
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    if (this.opts.startJitterMs) await sleep(Math.random() * this.opts.startJitterMs, signal);
    let needList = true;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (needList) {
          if (!(await this.relist())) {
            await sleep(this.opts.absentRecheckMs!, signal);
            continue;
          }
          needList = false;
        }
        const started = Date.now();
        await this.watchOnce();
        // A watch the server ends at once (it may, under load) must not turn into a busy loop.
        if (Date.now() - started < 1000) await sleep(1000, signal);
        failures = 0;
      } catch (err) {
        if (signal.aborted) return;
        if (isExpired(err)) {
          this.log.info({ rv: this.rv, listing: needList }, 'resourceVersion expired; relisting');
          if (needList) this.listFromStorage = true;
          needList = true;
          if (this.opts.relistJitterMs) await sleep(Math.random() * this.opts.relistJitterMs, signal);
          continue;
        }
        failures++;
        const firstFailure = this.failure === undefined;
        this.failure ??= { since: Date.now(), err: err as Error };
        this.failure.err = err as Error;
        this.opts.onContact?.(false);
        // Full jitter: replicas and nodes that failed together do not retry together.
        const backoffMs = Math.round(Math.random() * Math.min(this.opts.maxBackoffMs ?? MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** failures));
        // The first failure since the apiserver last answered is a warning; the retries that
        // follow (every second or so through an outage of hours, with a short backoff) are not
        // worth a line each.
        if (firstFailure) this.log.warn({ err, rv: this.rv, retryInMs: backoffMs }, 'list/watch failed; retrying');
        else this.log.debug({ err, rv: this.rv, retryInMs: backoffMs, failures }, 'list/watch failed again; retrying');
        await sleep(backoffMs, signal);
      }
    }
  }

  /**
   * Lists page by page and delivers the difference to what the sink already has, deletions
   * included. Returns false when the resource is absent from this apiserver (see absentRecheckMs).
   */
  private async relist(): Promise<boolean> {
    const seen = new Set<string>();
    let rv = '';
    let cont: string | undefined;
    // From the apiserver's watch cache, at a version no older than the last one seen (any version
    // at start), rather than a read of etcd by every client at once after an apiserver restart.
    // Continued pages carry their version in the token.
    const fromCache =
      this.listFromStorage || this.opts.pagedLists ? {} : { resourceVersion: this.rv || '0', resourceVersionMatch: 'NotOlderThan' };
    let absent = false;
    do {
      let res: IncomingMessage;
      try {
        res = await this.client.stream('GET', this.path, {
          query: {
            labelSelector: this.opts.labelSelector,
            fieldSelector: this.opts.fieldSelector,
            limit: this.opts.pageSize ?? DEFAULT_PAGE_SIZE,
            ...(cont ? { continue: cont } : fromCache),
          },
          accept: this.opts.metadataOnly ? ACCEPT_METADATA_LIST : ACCEPT_JSON,
          signal: this.abort.signal,
          idleTimeoutMs: LIST_IDLE_TIMEOUT_MS,
        });
      } catch (err) {
        if (cont || !this.opts.absentRecheckMs || !isStatus(err, 404)) throw err;
        absent = true;
        break;
      }
      const body = await readAll(res);
      const page = splitList<KubeObject>(body);
      for (const item of page.items()) {
        const key = objectKey(item);
        seen.add(key);
        this.known.add(key);
        this.sink.upsert(this.resource.resource, this.reduce(item));
      }
      rv = page.head.metadata?.resourceVersion ?? '';
      cont = (page.head.metadata as { continue?: string } | undefined)?.continue || undefined;
      releasePage(body);
    } while (cont);
    if (absent !== this.absent)
      this.log.info(
        absent ? { recheckInMs: this.opts.absentRecheckMs } : {},
        absent ? 'not served by this apiserver; served as an empty collection' : 'served by this apiserver now',
      );
    this.absent = absent;
    if (this.hasSynced && !absent) this.opts.metrics?.relist(this.resource.resource);
    for (const key of this.known) {
      if (seen.has(key)) continue;
      this.known.delete(key);
      this.log.info({ object: key }, 'object deleted while not watching; removing');
      const slash = key.indexOf('/');
      const metadata = slash < 0 ? { name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
      this.sink.delete(this.resource.resource, { metadata });
    }
    this.rv = rv;
    this.listFromStorage = false;
    this.reached();
    this.log.debug({ rv, count: seen.size }, 'listed');
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.syncedResolve();
    }
    return !absent;
  }

  /** The apiserver answered a list or a watch. */
  private reached(): void {
    if (this.failure) this.log.info('list/watch works again');
    this.failure = undefined;
    this.opts.onContact?.(true);
  }

  private async watchOnce(): Promise<void> {
    const res = await this.client.stream('GET', this.path, {
      query: {
        watch: true,
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
        resourceVersion: this.rv,
        allowWatchBookmarks: true,
        timeoutSeconds: watchTimeoutSeconds(),
      },
      accept: this.opts.metadataOnly ? ACCEPT_METADATA : ACCEPT_JSON,
      signal: this.abort.signal,
      idleTimeoutMs: this.opts.watchIdleTimeoutMs ?? DEFAULT_WATCH_IDLE_TIMEOUT_MS,
    });
    this.reached();
    const lines = new LineSplitter();
    const onLine = (line: string) => {
      if (line.trim()) this.handle(JSON.parse(line) as WatchEvent);
    };
    for await (const chunk of res) lines.push(chunk as Buffer, onLine);
  }

  private handle(ev: WatchEvent): void {
    const obj = ev.object;
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED':
        this.known.add(objectKey(obj));
        this.sink.upsert(this.resource.resource, this.reduce(obj));
        break;
      case 'DELETED':
        this.known.delete(objectKey(obj));
        this.sink.delete(this.resource.resource, obj);
        break;
      case 'BOOKMARK':
        break;
      case 'ERROR':
        if (obj.code === 410) throw new Expired(`watch ${this.path}: ${obj.message}`);
        throw new Error(`watch ${this.path}: ERROR ${obj.code} ${obj.message}`);
      default:
        throw new Error(`watch ${this.path}: unknown event type ${ev.type}`);
    }
    if (obj.metadata?.resourceVersion) this.rv = obj.metadata.resourceVersion;
  }
}

async function readAll(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
