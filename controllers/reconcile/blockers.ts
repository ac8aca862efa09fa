// Watches of foreign objects that block a grid: an object the grid does not control holds a name
// the grid wants. The labelled caches do not see such objects, so each one is watched by name
// (a field selector, metadata only: one small watch per blocked name, only while it blocks) and
// the grids it blocks are synced again as soon as it is deleted or changes hands, instead of at
// the next resync.

import type { Logger } from 'pino';
import type { KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import { controllerUid, type Resource } from './resources.ts';

export class BlockerWatches {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly onChange: (ref: string) => void;
  private readonly watched = new Map<string, Informer<KubeObject>>();

  /** `onChange(ref)` is called when the object holding `ref` is deleted, replaced or its controller changes. */
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
    const { namespace, name, uid } = blocker.metadata;
    const owner = controllerUid(blocker);
    const informer = new Informer<KubeObject>(this.client, resource, this.log, {
      fieldSelector: `metadata.namespace=${namespace},metadata.name=${name}`,
      metadataOnly: true,
    });
    informer.on((type, obj) => {
      if (type === 'delete' || obj.metadata.uid !== uid || controllerUid(obj) !== owner) {
        this.unwatch(ref);
        this.onChange(ref);
      }
    });
    this.watched.set(ref, informer);
    informer.start();
    // Gone before the watch's first list: that list has no object, so no event says so.
    void informer.synced.then(() => {
      if (this.watched.get(ref) === informer && !informer.get(namespace, name)) {
        this.unwatch(ref);
        this.onChange(ref);
      }
    });
  }

  unwatch(ref: string): void {
    this.watched.get(ref)?.stop();
    this.watched.delete(ref);
  }

  stop(): void {
    for (const ref of [...this.watched.keys()]) this.unwatch(ref);
  }
}
