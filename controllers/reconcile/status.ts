// Status writes: a merge patch on the status subresource, only when the status differs from what
// the grid shows, or from what this controller wrote last while the cache has not caught up
// with that write yet (a second sync right after the first must not write the same status again).

import type { KubeClient } from '../../kube/client.ts';
import type { KubeObject } from '../../kube/objects.ts';
import { resourcePath } from '../../kube/objects.ts';
import { jsonEqual } from '../render/common.ts';
import { FIELD_MANAGER } from './apply.ts';
import type { WriteLimiter } from './concurrency.ts';
import { RecentWrites } from './recent.ts';
import type { GridObject, Resource } from './resources.ts';

export class StatusWriter {
  /** grid uid → the status we wrote, until the cache shows it. */
  private readonly written = new RecentWrites<Record<string, unknown>>();
  private readonly limiter: WriteLimiter;

  /** Status writes are deferred writes of `limiter`: they go once the objects they report on are written. */
  constructor(limiter: WriteLimiter) {
    this.limiter = limiter;
  }

  /** The status `grid` holds: what this controller last wrote until the cache shows it, else the cache's. */
  held(grid: KubeObject): Record<string, unknown> | undefined {
    return this.written.get(grid.metadata.uid!, grid.metadata.resourceVersion) ?? (grid.status as Record<string, unknown> | undefined);
  }

  /** Writes `status` when it differs. Returns true when it wrote. */
  async write(client: KubeClient, resource: Resource, grid: GridObject, status: Record<string, unknown>): Promise<boolean> {
    // Until the cache shows our last write, the grid holds what we wrote, not what the cache
    // shows: a status that went back to the cached one meanwhile must still be written (the echo
    // of our write wakes no sync to notice it later).
    const live = this.held(grid) ?? {};
    if (jsonEqual(live, status)) return false;
    const written = await this.limiter.run('deferred', () => patchStatus(client, resource, grid, live, status));
    this.written.put(grid.metadata.uid, written?.metadata?.resourceVersion, status);
    return true;
  }

  /** The cache delivered a version of a grid: once it is the one we wrote, the cache is the truth again. */
  seen(grid: KubeObject, deleted = false): void {
    const uid = grid.metadata?.uid as string | undefined;
    if (uid) this.written.seen(uid, deleted ? undefined : grid.metadata?.resourceVersion);
  }
}

/** A merge patch of the status subresource that replaces the whole status (`live`: the status the grid holds). */
function patchStatus(
  client: KubeClient,
  resource: Resource,
  obj: GridObject,
  live: Record<string, unknown>,
  status: Record<string, unknown>,
): Promise<KubeObject> {
  const path = resourcePath(resource, obj.metadata.namespace || undefined, obj.metadata.name, 'status');
  // Null out fields that disappeared so the merge patch really replaces the status.
  const patch: Record<string, unknown> = {};
  for (const k of Object.keys(live)) patch[k] = null;
  Object.assign(patch, status);
  // Only the answer's resourceVersion is read.
  return client.mergePatch<KubeObject>(path, { status: patch }, FIELD_MANAGER, 'metadata');
}
