// Watches of foreign objects that block a grid: an object the grid does not control holds a name
// the grid wants. The labelled caches do not see such objects, so each one is watched by name
// (a field selector: one small watch per blocked name, only while it blocks) and the grids it
// blocks are synced again as soon as it is deleted or changes hands, instead of at the next resync.

import type { Logger } from 'pino';
import { ApiError, isStatus, type KubeClient, resourcePath } from '../kube/client.ts';
import type { KubeObject } from '../kube/informer.ts';
import { controllerUid, type Resource } from './resources.ts';

const WATCH_TIMEOUT_SECONDS = 300;
const MAX_BACKOFF_MS = 30_000;

interface Watched {
  abort: AbortController;
}

export class BlockerWatches {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly onChange: (ref: string) => void;
  private readonly watched = new Map<string, Watched>();

  /** `onChange(ref)` is called when the object holding `ref` is deleted or its controller changes. */
  constructor(client: KubeClient, log: Logger, onChange: (ref: string) => void) {
    this.client = client;
    this.log = log;
    this.onChange = onChange;
  }

  get size(): number {
    return this.watched.size;
  }

  /** Starts watching the blocker of `ref`, unless it is watched already. */
  watch(ref: string, resource: Resource, blocker: KubeObject): void {
    if (this.watched.has(ref)) return;
    const w: Watched = { abort: new AbortController() };
    this.watched.set(ref, w);
    void this.run(ref, resource, blocker, w);
  }

  unwatch(ref: string): void {
    this.watched.get(ref)?.abort.abort();
    this.watched.delete(ref);
  }

  stop(): void {
    for (const ref of [...this.watched.keys()]) this.unwatch(ref);
  }

  private async run(ref: string, resource: Resource, blocker: KubeObject, w: Watched): Promise<void> {
    const ns = blocker.metadata!.namespace;
    const name = blocker.metadata!.name!;
    const uid = blocker.metadata!.uid;
    const owner = controllerUid(blocker);
    let resourceVersion = blocker.metadata!.resourceVersion as string;
    let backoffMs = 0;
    const changed = () => {
      if (w.abort.signal.aborted) return;
      this.unwatch(ref);
      this.onChange(ref);
    };
    while (!w.abort.signal.aborted) {
      const started = Date.now();
      try {
        await this.client.watch(
          resourcePath(resource, ns),
          { fieldSelector: `metadata.name=${name}`, resourceVersion, allowWatchBookmarks: true, timeoutSeconds: WATCH_TIMEOUT_SECONDS },
          (e) => {
            if (e.type === 'ERROR') throw new ApiError('WATCH', ref, (e.object as { code?: number }).code ?? 500, e.object);
            const obj = e.object as KubeObject;
            if (obj.metadata?.resourceVersion) resourceVersion = obj.metadata.resourceVersion;
            if (e.type === 'BOOKMARK') return;
            if (e.type === 'DELETED' || obj.metadata?.uid !== uid || controllerUid(obj) !== owner) changed();
          },
          w.abort.signal,
        );
        backoffMs = 0;
        // A watch that ends at once is a failing one; do not spin on it.
        if (Date.now() - started < 1000) await new Promise((r) => setTimeout(r, 1000));
      } catch (err) {
        if (w.abort.signal.aborted) return;
        if (isStatus(err, 410)) {
          // Too old to resume: look at the object itself.
          try {
            const now = await this.client.get<KubeObject>(resourcePath(resource, ns, name));
            if (now.metadata?.uid !== uid || controllerUid(now) !== owner) return changed();
            resourceVersion = now.metadata?.resourceVersion ?? resourceVersion;
            continue;
          } catch (getErr) {
            if (isStatus(getErr, 404)) return changed();
          }
        }
        backoffMs = Math.min(backoffMs ? backoffMs * 2 : 500, MAX_BACKOFF_MS);
        this.log.warn({ err, object: ref, retryInMs: backoffMs }, 'watch of a blocking object failed');
        await new Promise((r) => setTimeout(r, backoffMs));
      }
    }
  }
}
