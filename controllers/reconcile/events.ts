// Events about grids, aggregated and deduplicated: a sync posts at most one event per kind of
// change (Created, Updated, Deleted, Evicted) naming the units it touched, and one Warning per
// problem reason naming the units whose problem is new. A problem is announced once: the
// recorder remembers what it announced per grid (not the grid's status in the cache, which lags
// our own status write, so a second sync right after the first would announce it again).

import type { Logger } from 'pino';
import type { KubeClient } from '../../kube/client.ts';
import { API_VERSION, GROUP } from '../api/v1alpha1.ts';
import { FIELD_MANAGER } from './apply.ts';
import type { WriteLimiter } from './concurrency.ts';
import { listSome } from './conditions.ts';
import type { GridObject } from './resources.ts';

const MAX_NOTE = 1024;
const ACTIONS: Record<string, string> = { Created: 'Create', Updated: 'Update', Deleted: 'Delete', Evicted: 'Evict' };

/** Posts events.k8s.io/v1 Events about a grid without holding up the sync. Failures are logged, never fatal. */
export class EventRecorder {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly instance: string;
  private readonly limiter: WriteLimiter;
  private readonly inFlight = new Set<Promise<void>>();
  /** grid uid → topic → text last announced. */
  private readonly announced = new Map<string, Map<string, string>>();

  /** Events are deferred writes of `limiter`: they go once the objects they tell of are written. */
  constructor(client: KubeClient, log: Logger, instance: string, limiter: WriteLimiter) {
    this.client = client;
    this.log = log;
    this.instance = instance;
    this.limiter = limiter;
  }

  record(grid: GridObject, type: 'Normal' | 'Warning', reason: string, action: string, note: string): void {
    const p = this.post(grid, type, reason, action, note).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Resolves once every event posted so far was answered. */
  async flushed(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  /**
   * Which of `current` (topic → text) were not announced yet for this grid; remembers `current`
   * as announced (a topic that disappears may be announced again when it comes back). The first
   * time a grid is seen, `alreadyKnown` (from its status) counts as announced, so a restart does
   * not repeat standing problems.
   */
  fresh(grid: GridObject, current: Map<string, string>, alreadyKnown: () => Map<string, string>): string[] {
    const uid = grid.metadata.uid;
    const before = this.announced.get(uid) ?? alreadyKnown();
    this.announced.set(uid, current);
    return [...current].filter(([topic, text]) => before.get(topic) !== text).map(([topic]) => topic);
  }

  forget(gridUid: string | undefined): void {
    if (gridUid) this.announced.delete(gridUid);
  }

  private async post(grid: GridObject, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void> {
    const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    const ns = grid.metadata.namespace;
    try {
      const path = `/apis/events.k8s.io/v1/namespaces/${ns}/events`;
      await this.limiter.run('deferred', () =>
        this.client.request('POST', path, {
          answer: 'none',
          body: {
            apiVersion: 'events.k8s.io/v1',
            kind: 'Event',
            // Named like client-go's recorder: <object>.<unique hex>.
            metadata: {
              name: `${grid.metadata.name}.${(Date.now() * 4096 + Math.floor(Math.random() * 4096)).toString(16)}`,
              namespace: ns,
            },
            regarding: { apiVersion: API_VERSION, kind: grid.kind, name: grid.metadata.name, namespace: ns, uid: grid.metadata.uid },
            reason,
            action,
            note: truncate(note),
            type,
            eventTime: now,
            reportingController: `${GROUP}/${FIELD_MANAGER}`,
            reportingInstance: this.instance,
          },
        }),
      );
    } catch (err) {
      this.log.warn({ err, grid: `${ns}/${grid.metadata.name}`, kind: grid.kind, reason }, 'could not record event');
    }
  }
}

function truncate(note: string): string {
  return note.length <= MAX_NOTE ? note : `${note.slice(0, MAX_NOTE - 1)}…`;
}

/** What one sync changed, posted as one event per verb when the sync ends. */
export class SyncEvents {
  private readonly changes = new Map<string, string[]>();

  /** `verb` is Created, Updated, Deleted or Evicted; `what` names the object and its unit. */
  add(verb: string, what: string): void {
    let l = this.changes.get(verb);
    if (!l) this.changes.set(verb, (l = []));
    l.push(what);
  }

  count(verb: string): number {
    return this.changes.get(verb)?.length ?? 0;
  }

  get empty(): boolean {
    return this.changes.size === 0;
  }

  /**
   * The changes as log fields: a count per verb (`created: 200`) and the first `max` objects in
   * name order, so that one line tells what a sync wrote without growing with the grid.
   */
  logFields(max: number): Record<string, unknown> {
    const fields: Record<string, unknown> = {};
    const all: string[] = [];
    for (const [verb, items] of this.changes) {
      fields[verb.toLowerCase()] = items.length;
      all.push(...items);
    }
    all.sort();
    fields.objects = all.slice(0, max);
    if (all.length > max) fields.more = all.length - max;
    return fields;
  }

  post(recorder: EventRecorder, grid: GridObject, objectKind: string): void {
    for (const [verb, items] of this.changes) {
      items.sort();
      const noun = verb === 'Evicted' ? (items.length === 1 ? 'pod' : 'pods') : `${objectKind}${items.length === 1 ? '' : 's'}`;
      recorder.record(grid, 'Normal', verb, ACTIONS[verb] ?? verb, `${verb} ${items.length} ${noun}: ${listSome(items, 10)}`);
    }
  }
}
