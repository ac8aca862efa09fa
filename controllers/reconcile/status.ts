// Status writes: a merge patch on the status subresource, only when the status differs from what
// the grid shows, or from what this controller wrote last while the cache has not caught up
// with that write yet (a second sync right after the first must not write the same status again).

import { type KubeClient, resourcePath } from '../kube/client.ts';
import type { KubeObject } from '../kube/informer.ts';
import { stableStringify } from '../render/common.ts';
import { FIELD_MANAGER } from './apply.ts';
import type { GridObject, Resource } from './resources.ts';

/** How long a written status may stay unseen in the cache before it is no longer trusted. */
const PENDING_MS = 30_000;

export class StatusWriter {
  /** grid uid → the status we wrote and the resourceVersion it produced, until the cache shows it. */
  private readonly pending = new Map<string, { resourceVersion: string; status: string; at: number }>();

  /** Writes `status` when it differs. Returns true when it wrote. */
  async write(client: KubeClient, resource: Resource, grid: GridObject, status: Record<string, unknown>): Promise<boolean> {
    const text = stableStringify(status);
    if (stableStringify(grid.status ?? {}) === text) return false;
    const p = this.pending.get(grid.metadata.uid);
    if (p && p.status === text && Date.now() - p.at < PENDING_MS) return false;
    const path = resourcePath(resource, grid.metadata.namespace, grid.metadata.name, 'status');
    // Null out fields that disappeared so the merge patch really replaces the status.
    const patch: Record<string, unknown> = {};
    for (const k of Object.keys(grid.status ?? {})) patch[k] = null;
    Object.assign(patch, status);
    const written = await client.mergePatch<KubeObject>(path, { status: patch }, FIELD_MANAGER);
    const resourceVersion = written?.metadata?.resourceVersion;
    if (resourceVersion) this.pending.set(grid.metadata.uid, { resourceVersion, status: text, at: Date.now() });
    return true;
  }

  /** The cache delivered a version of a grid: once it is the one we wrote, the cache is the truth again. */
  seen(grid: KubeObject): void {
    const uid = grid.metadata?.uid as string | undefined;
    if (!uid) return;
    const p = this.pending.get(uid);
    if (p && p.resourceVersion === grid.metadata?.resourceVersion) this.pending.delete(uid);
  }

  forget(uid: string | undefined): void {
    if (uid) this.pending.delete(uid);
  }
}
