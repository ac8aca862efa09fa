// The durable side of the node's view, what keeps a node routing while the apiserver cannot be
// reached: the view rebuilt from the saved state at start, every upstream change noted so that a
// coalesced snapshot follows, deletions made upstream while the wrapper was away applied after
// its first list, and the upstream contact behind the offline status of /metrics and /readyz.
import type { Logger } from 'pino';
import { type KubeObject, objectKey } from '../kube/objects.ts';
import { type SavedState, SnapshotScheduler, type StateStore } from './state.ts';
import type { NodeUnitView, UpstreamResource } from './view.ts';

/**
 * The order objects are saved and restored in: Nodes (and NodeUnits, which place nodes) first, so
 * each Service is filtered once.
 */
const SAVE_ORDER: readonly UpstreamResource[] = [
  'nodes',
  'nodeunits',
  'namespaces',
  'servicecidrs',
  'services',
  'endpointslices',
  'endpoints',
];

const metadataOfKey = (key: string) => {
  const slash = key.indexOf('/');
  return slash < 0 ? { name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
};

/** A saved state the view was rebuilt from: where, its header, how many objects. */
export interface RestoredState {
  file: string;
  header: SavedState['header'];
  objects: number;
}

export interface DurableViewOptions {
  view: NodeUnitView;
  /** Undefined: nothing is saved or restored (no state directory). */
  store: StateStore | undefined;
  log: Logger;
  /** At most one snapshot per interval. */
  snapshotIntervalMs: number;
  resources: readonly string[];
  metrics?: { received(resource: string): void };
}

export class DurableView {
  private readonly view: NodeUnitView;
  private readonly store: StateStore | undefined;
  private readonly log: Logger;
  private readonly scheduler: SnapshotScheduler | undefined;
  private readonly metrics: DurableViewOptions['metrics'];
  /** Keys restored from the saved state that no upstream list has confirmed yet, per resource. */
  private readonly unconfirmed = new Map<string, Set<string>>();
  /** Resources whose last upstream list or watch failed (none listed yet counts as down). */
  private readonly down: Set<string>;
  private readonly resources: readonly string[];
  /** Resources listed upstream since start. */
  private readonly listedOnce = new Set<string>();
  /**
   * Whether the view holds a whole state (restored, or every resource listed): a snapshot of a
   * view still filling up would later be served as complete, so none is taken before.
   */
  private complete = false;
  /** The saved state served at start, until every resource has been listed upstream. */
  restored: SavedState['header'] | undefined;
  /** The apiserver's GET /version answer, saved so clients can have it offline. */
  version: unknown;
  /** When the apiserver last answered (ms since the epoch). */
  lastContact: number | undefined;
  /** When the saved state was restored from was written (ms since the epoch). */
  private restoredWrittenAt = 0;

  constructor(o: DurableViewOptions) {
    this.view = o.view;
    this.store = o.store;
    this.log = o.log;
    this.down = new Set(o.resources);
    this.resources = o.resources;
    this.metrics = o.metrics;
    this.scheduler = o.store ? new SnapshotScheduler(o.snapshotIntervalMs, () => this.snapshot()) : undefined;
  }

  /**
   * Rebuilds the view from the newest valid saved state; undefined when there is none. Returns
   * what was restored, not the parsed objects: once in the view they are garbage, and a caller
   * holding them would keep a second copy of the whole state for the life of the process.
   */
  restore(): RestoredState | undefined {
    const state = this.store?.load();
    if (!state) return undefined;
    for (const { resource, object } of state.objects) {
      this.view.upsert(resource, object as KubeObject);
      let keys = this.unconfirmed.get(resource);
      if (!keys) this.unconfirmed.set(resource, (keys = new Set()));
      keys.add(objectKey(object));
    }
    this.version = state.meta.version;
    this.lastContact = state.meta.lastContact;
    this.restored = state.header;
    this.complete = true;
    this.restoredWrittenAt = Date.parse(state.header.writtenAt);
    return { file: state.file, header: state.header, objects: state.objects.length };
  }

  upsert(resource: string, obj: KubeObject): void {
    this.metrics?.received(resource);
    this.unconfirmed.get(resource)?.delete(objectKey(obj));
    this.view.upsert(resource, obj);
    this.scheduler?.changed();
  }

  delete(resource: string, obj: KubeObject): void {
    this.metrics?.received(resource);
    this.unconfirmed.get(resource)?.delete(objectKey(obj));
    this.view.delete(resource, obj);
    this.scheduler?.changed();
  }

  /**
   * After the first complete upstream list of a resource: objects of the saved state that the list
   * did not return were deleted while the wrapper could not see it, and are deleted now.
   */
  listed(resource: string): void {
    this.contact(resource);
    const keys = this.unconfirmed.get(resource);
    this.unconfirmed.delete(resource);
    for (const key of keys ?? []) {
      this.log.info({ resource, object: key }, 'object of the saved state deleted upstream meanwhile; removing');
      this.view.delete(resource, { metadata: metadataOfKey(key) });
    }
    this.listedOnce.add(resource);
    this.scheduler?.changed();
    if (this.listedOnce.size < this.resources.length) return;
    this.complete = true;
    if (this.restored) {
      this.log.info({ generation: this.restored.generation }, 'every resource listed upstream; the saved state is no longer served');
      this.restored = undefined;
    }
  }

  /** Upstream answered (a list or a watch of `resource`). */
  contact(resource: string): void {
    this.lastContact = Date.now();
    if (this.down.delete(resource) && this.down.size === 0) this.log.info('apiserver reachable');
  }

  /** A list or watch of `resource` failed. */
  lost(resource: string): void {
    if (this.down.size === 0) this.log.warn('apiserver unreachable; serving the last known state');
    this.down.add(resource);
  }

  /** The apiserver's /version answer changed (or was first read). */
  setVersion(version: unknown): void {
    if (JSON.stringify(version) === JSON.stringify(this.version)) return;
    this.version = version;
    this.scheduler?.changed();
  }

  get offline(): boolean {
    return this.down.size > 0;
  }

  /** Age of what is served: 0 while the apiserver answers, else the time since it last did. */
  ageSeconds(now = Date.now()): number {
    if (!this.offline) return 0;
    const since = this.lastContact ?? this.restoredWrittenAt;
    return since ? Math.max(0, (now - since) / 1000) : 0;
  }

  *objects(): Iterable<[string, string | Buffer]> {
    for (const resource of SAVE_ORDER) for (const json of this.view.upstreamObjects(resource)) yield [resource, json];
  }

  /** Writes a snapshot now (also what the scheduler does every interval when something changed). */
  snapshot(): Promise<boolean> {
    if (!this.store || !this.complete) return Promise.resolve(true);
    return this.store.save({ version: this.version, lastContact: this.lastContact }, this.objects());
  }

  /** Writes what changed since the last snapshot (on a clean stop). */
  async flush(): Promise<void> {
    await this.scheduler?.flush();
  }

  stop(): void {
    this.scheduler?.stop();
  }
}
