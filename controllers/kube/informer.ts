// One list/watch cache for any kind: lists (paginated), then watches from the list's
// resourceVersion with bookmarks, re-watches from the last seen version when a watch ends, and
// relists on 410 Expired. Handlers get add/update/delete with the cached objects.

import type { Logger } from 'pino';
import { ApiError, type KubeClient } from './client.ts';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: any };
  [k: string]: any;
}

export type EventType = 'add' | 'update' | 'delete';
export type Handler<T> = (type: EventType, obj: T, old?: T) => void;

export interface InformerOptions {
  /** Cluster-wide collection path, e.g. /apis/apps/v1/deployments. */
  path: string;
  labelSelector?: string;
  /** Short name for logs and metrics, e.g. 'deployments'. */
  name: string;
  watchTimeoutSeconds?: number;
}

export function objectKey(o: KubeObject): string {
  return o.metadata?.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : (o.metadata?.name ?? '');
}

class Expired extends Error {}

export class Informer<T extends KubeObject> {
  private readonly client: KubeClient;
  private readonly opts: InformerOptions;
  private readonly log: Logger;
  private readonly store = new Map<string, T>();
  private readonly byNamespace = new Map<string, Map<string, T>>();
  private readonly handlers: Handler<T>[] = [];
  private resourceVersion = '';
  /** Since when every list/watch request has failed (undefined while they succeed), and why. */
  private failure: { since: number; err: Error } | undefined;
  private loopEnded = false;
  private abort = new AbortController();
  private stopped = false;
  private syncedResolve!: () => void;
  /** Resolves once the first list is in the cache. */
  readonly synced: Promise<void> = new Promise((r) => {
    this.syncedResolve = r;
  });

  constructor(client: KubeClient, opts: InformerOptions, log: Logger) {
    this.client = client;
    this.opts = opts;
    this.log = log.child({ informer: opts.name });
  }

  on(handler: Handler<T>): void {
    this.handlers.push(handler);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.store.get(namespace ? `${namespace}/${name}` : name);
  }

  list(namespace?: string): T[] {
    if (namespace === undefined) return [...this.store.values()];
    return [...(this.byNamespace.get(namespace)?.values() ?? [])];
  }

  get name(): string {
    return this.opts.name;
  }

  get size(): number {
    return this.store.size;
  }

  /** Starts the list/watch loop in the background; await `synced` for the first list. */
  start(): void {
    this.run().then(
      () => (this.loopEnded = !this.stopped),
      (err) => {
        this.loopEnded = true;
        this.log.error({ err }, 'list/watch loop ended');
      },
    );
  }

  /**
   * Why this cache cannot be trusted, or undefined: its loop ended, or its list/watch requests
   * have failed without a success for longer than `graceMs`.
   */
  problem(now: number, graceMs: number): string | undefined {
    if (this.loopEnded) return 'list/watch loop ended';
    if (this.failure && now - this.failure.since > graceMs)
      return `list/watch failing for ${Math.round((now - this.failure.since) / 1000)}s: ${this.failure.err.message}`;
    return undefined;
  }

  /** True while the last list/watch request failed. */
  get failing(): boolean {
    return this.failure !== undefined;
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
  }

  private put(obj: T): void {
    const key = objectKey(obj);
    const old = this.store.get(key);
    this.store.set(key, obj);
    const ns = obj.metadata?.namespace ?? '';
    let m = this.byNamespace.get(ns);
    if (!m) this.byNamespace.set(ns, (m = new Map()));
    m.set(obj.metadata!.name!, obj);
    if (old && old.metadata?.resourceVersion === obj.metadata?.resourceVersion) return;
    this.emit(old ? 'update' : 'add', obj, old);
  }

  private remove(obj: T): void {
    const key = objectKey(obj);
    const old = this.store.get(key);
    this.store.delete(key);
    this.byNamespace.get(obj.metadata?.namespace ?? '')?.delete(obj.metadata!.name!);
    this.emit('delete', old ?? obj);
  }

  private emit(type: EventType, obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        h(type, obj, old);
      } catch (err) {
        this.log.error({ err, object: objectKey(obj) }, 'informer handler failed');
      }
    }
  }

  private async relist(): Promise<void> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await this.client.request<{ items: T[]; metadata: { resourceVersion: string; continue?: string } }>(
        'GET',
        this.opts.path,
        {
          query: { labelSelector: this.opts.labelSelector, limit: 500, continue: cont },
          signal: this.abort.signal,
        },
      );
      items.push(...page.items);
      rv = page.metadata.resourceVersion;
      cont = page.metadata.continue || undefined;
    } while (cont);
    const seen = new Set<string>();
    for (const item of items) {
      seen.add(objectKey(item));
      this.put(item);
    }
    for (const [key, obj] of [...this.store]) if (!seen.has(key)) this.remove(obj);
    this.resourceVersion = rv;
  }

  private async watchOnce(): Promise<void> {
    await this.client.watch(
      this.opts.path,
      {
        labelSelector: this.opts.labelSelector,
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: this.opts.watchTimeoutSeconds ?? 300,
      },
      (e) => {
        if (e.type === 'ERROR') {
          const code = (e.object as { code?: number }).code;
          throw code === 410 ? new Expired() : new Error(`watch ${this.opts.path}: ${JSON.stringify(e.object)}`);
        }
        const obj = e.object as T;
        if (e.type === 'ADDED' || e.type === 'MODIFIED') this.put(obj);
        else if (e.type === 'DELETED') this.remove(obj);
        if (obj.metadata?.resourceVersion) this.resourceVersion = obj.metadata.resourceVersion;
      },
      this.abort.signal,
      () => (this.failure = undefined),
    );
  }

  private async run(): Promise<void> {
    let backoffMs = 0;
    while (!this.stopped) {
      try {
        if (!this.resourceVersion) {
          await this.relist();
          this.failure = undefined;
          this.syncedResolve();
        }
        const started = Date.now();
        await this.watchOnce();
        // A watch that ends at once is a failing one; do not spin on it.
        if (Date.now() - started < 1000) await new Promise((r) => setTimeout(r, 1000));
        backoffMs = 0;
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof Expired || (err instanceof ApiError && err.statusCode === 410)) {
          this.log.info('watch expired; relisting');
          this.resourceVersion = '';
          continue;
        }
        this.failure ??= { since: Date.now(), err: err as Error };
        this.failure.err = err as Error;
        backoffMs = Math.min(backoffMs ? backoffMs * 2 : 500, 30_000);
        this.log.warn({ err, retryInMs: backoffMs }, 'list/watch failed');
        await new Promise((r) => setTimeout(r, backoffMs));
      }
    }
  }
}
