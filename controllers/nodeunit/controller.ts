// Keeps NodeUnits in step with the cluster: one discovered NodeUnit per value of every node label
// key a grid or a topology annotation (of a Service or a Namespace) names; the labels of declared
// NodeUnits on their member nodes; and every unit's status. Everything is one level-triggered sync of the whole picture
// (one queue key), fed by the caches; a sync with nothing changed makes no write.

import type { Logger } from 'pino';
import { isStatus, type KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import { type KubeObject, resourcePath } from '../../kube/objects.ts';
import type { ReflectorOptions } from '../../kube/reflector.ts';
import { namespaceTopologyKeysOf, topologyKeysOf } from '../../wrapper/filter.ts';
import { matchesLabels } from '../../wrapper/selectors.ts';
import {
  ANNOTATION_TOPOLOGY_KEYS,
  ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE,
  GROUP,
  KIND_DEPLOYMENT_GRID,
  KIND_SERVICE_GRID,
  KIND_STATEFULSET_GRID,
  NODE_LABEL_FIELD_MANAGER,
  type NodeUnit,
  type NodeUnitGridRef,
  type NodeUnitStatus,
  PLURAL_NODE_UNIT,
  VERSION,
} from '../api/v1alpha1.ts';
import { FIELD_MANAGER } from '../reconcile/apply.ts';
import { CONTROLLER_WRITE_CONCURRENCY, forEachConcurrently, UNIT_CONCURRENCY, WriteLimiter } from '../reconcile/concurrency.ts';
import { WorkQueue } from '../reconcile/queue.ts';
import { RecentWrites } from '../reconcile/recent.ts';
import { NODES, type Resource, SERVICES } from '../reconcile/resources.ts';
import { jsonEqual, oncePerObject, stableStringify } from '../render/common.ts';
import { type NodeMembership, nodeView } from './membership.ts';
import {
  isDeclared,
  keysInUse,
  labelsSettled,
  type NodeView,
  nodeLabelsApply,
  nodeUnitStatus,
  planDiscovered,
  resolveClaims,
  statusPatch,
} from './render.ts';

export const NODE_UNITS: Resource = { group: GROUP, version: VERSION, resource: PLURAL_NODE_UNIT };
const NAMESPACES: Resource = { group: '', version: 'v1', resource: 'namespaces' };

const SYNC_KEY = 'nodeunits';

export interface NodeUnitControllerOptions {
  client: KubeClient;
  log: Logger;
  /** The grid caches (shared with the grid controller): their gridUniqKeys are units in use. */
  deploymentGrids: Informer<KubeObject>;
  serviceGrids: Informer<KubeObject>;
  statefulSetGrids: Informer<KubeObject>;
  /** The Node cache (shared with the grid controller), kept with `slimNode`. */
  nodes: Informer<KubeObject>;
  /** That cache grouped by label value (`NodeMembership.following(nodes)`, shared with the grid controller). */
  membership: NodeMembership;
  /** Re-sync this often (0: never). */
  resyncPeriodMs?: number;
  /** A watch silent this long is taken for a dead connection and re-opened (default: the reflector's). */
  watchIdleTimeoutMs?: number;
  /**
   * The process's write limiter, shared with the grid controller: every write here is deferred
   * while grid objects are being written (default: one of its own).
   */
  writes?: WriteLimiter;
}

interface NodeObject extends KubeObject {
  status?: { conditions?: { type: string; status: string }[] };
}

/** Topology keys parsed once per object version: a handler compares an object's old and new keys. */
const serviceTopology = oncePerObject((obj: KubeObject) => topologyKeysOf(obj));
const namespaceTopology = oncePerObject((obj: KubeObject) => namespaceTopologyKeysOf(obj));

/**
 * The parts of a Service or Namespace the NodeUnit rules read: its name and its topology
 * annotations. Other annotations (a client's last-applied configuration is often the largest
 * part of an object) are not kept.
 */
function topologyView(obj: KubeObject): KubeObject {
  const { name, namespace, uid, resourceVersion, annotations } = obj.metadata;
  const kept: Record<string, string> = {};
  for (const k of [ANNOTATION_TOPOLOGY_KEYS, ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE])
    if (annotations && Object.hasOwn(annotations, k)) kept[k] = annotations[k]!;
  return { metadata: { name, namespace, uid, resourceVersion, ...(Object.keys(kept).length ? { annotations: kept } : {}) } };
}

/** NodeUnits named in one log line; the count is complete. */
const LOGGED_NODE_UNITS = 10;

/** `{ count, <field>: first names in order, more }`, for a log line about many objects. */
function namesLogged(field: string, names: string[]): Record<string, unknown> {
  const sorted = [...names].sort();
  return {
    count: names.length,
    [field]: sorted.slice(0, LOGGED_NODE_UNITS),
    ...(names.length > LOGGED_NODE_UNITS ? { more: names.length - LOGGED_NODE_UNITS } : {}),
  };
}

/** What a NodeUnit's status is computed from, and the status it holds. */
interface SettledInputs {
  unit: NodeUnit;
  members: readonly NodeView[];
  grids: readonly NodeUnitGridRef[];
  conflicts: readonly string[] | undefined;
  live: NodeUnitStatus;
}

function sameInputs(a: SettledInputs | undefined, b: SettledInputs): boolean {
  return (
    a !== undefined &&
    a.unit === b.unit &&
    a.members === b.members &&
    a.live === b.live &&
    jsonEqual(a.grids, b.grids) &&
    jsonEqual(a.conflicts, b.conflicts)
  );
}

function push<T>(m: Map<string, T[]>, key: string, value: T): void {
  const list = m.get(key);
  if (list) list.push(value);
  else m.set(key, [value]);
}

export class NodeUnitController {
  readonly queue = new WorkQueue();
  readonly units: Informer<KubeObject>;
  readonly nodes: Informer<KubeObject>;
  /** All Services and Namespaces (for their topology annotations). */
  readonly services: Informer<KubeObject>;
  readonly namespaces: Informer<KubeObject>;
  private readonly opts: NodeUnitControllerOptions;
  private readonly log: Logger;
  private readonly writes: WriteLimiter;
  private readonly own: Informer<KubeObject>[];
  /**
   * Node → what a refused label write tried (labels wanted, labels found), so it is retried only
   * when one of those changes: a standing conflict costs no write per sync.
   */
  private readonly labelFailures = new Map<string, { attempt: string; message: string }>();
  /**
   * Creates and status writes the cache does not show yet. A sync that starts before the watch
   * brings back the previous sync's writes would otherwise send them again (a 409 for the create,
   * the same status once more).
   */
  private readonly created = new RecentWrites<true>();
  private readonly statusWritten = new RecentWrites<NodeUnitStatus>();
  /** The Node cache grouped by the label keys in use. */
  private readonly membership: NodeMembership;
  /**
   * NodeUnit name → the inputs of its last status computation that needed no write. The same
   * inputs again (the unit object, its member array, its grids and conflicts, the status it
   * holds) need none either: most units are untouched by a relabel.
   */
  private readonly settled = new Map<string, SettledInputs>();
  private worker?: Promise<void>;
  /** Keys the topology annotations of Services and Namespaces name; recomputed after one of those changes. */
  private annotatedKeys?: Set<string>;
  private resyncTimer?: NodeJS.Timeout;

  constructor(opts: NodeUnitControllerOptions) {
    this.opts = opts;
    this.log = opts.log.child({ controller: 'nodeunit' });
    this.writes = opts.writes ?? new WriteLimiter(CONTROLLER_WRITE_CONCURRENCY);
    const informer = (r: Resource, options: ReflectorOptions = {}) =>
      new Informer<KubeObject>(opts.client, r, opts.log, { watchIdleTimeoutMs: opts.watchIdleTimeoutMs, ...options });
    this.units = informer(NODE_UNITS);
    // The grid controller's Node cache (kept with slimNode: labels, annotations, readiness).
    this.nodes = opts.nodes;
    this.membership = opts.membership;
    // Only topology annotations matter for these two: metadata is enough, and of it only those.
    this.services = informer(SERVICES, { metadataOnly: true, keep: topologyView });
    this.namespaces = informer(NAMESPACES, { metadataOnly: true, keep: topologyView });
    this.own = [this.units, this.services, this.namespaces];

    const wake = () => this.queue.add(SYNC_KEY);
    this.units.on((type, obj, old) => {
      // Our own status writes come back as updates with the same generation: nothing to do.
      if (
        type === 'update' &&
        old?.metadata?.generation === obj.metadata?.generation &&
        jsonEqual(old?.metadata?.labels ?? {}, obj.metadata?.labels ?? {}) &&
        !!old?.metadata?.deletionTimestamp === !!obj.metadata?.deletionTimestamp
      )
        return;
      wake();
    });
    // Only labels, readiness and presence matter here, not the frequent heartbeats.
    this.membership.onChange(wake);
    this.services.on((type, obj, old) => {
      const now = serviceTopology(obj);
      if (type === 'update' && old && jsonEqual(serviceTopology(old), now)) return;
      if (type !== 'update' && now.kind === 'none') return;
      this.annotatedKeys = undefined;
      wake();
    });
    this.namespaces.on((type, obj, old) => {
      const now = namespaceTopology(obj);
      if (type === 'update' && old && jsonEqual(namespaceTopology(old), now)) return;
      if (type !== 'update' && now.kind === 'none') return;
      this.annotatedKeys = undefined;
      wake();
    });
    const onGrid = (type: string, obj: KubeObject, old?: KubeObject) => {
      if (type === 'update' && old?.spec?.gridUniqKey === obj.spec?.gridUniqKey) return;
      wake();
    };
    opts.deploymentGrids.on(onGrid);
    opts.serviceGrids.on(onGrid);
    opts.statefulSetGrids.on(onGrid);
  }

  async start(): Promise<void> {
    for (const i of this.own) i.start();
    const shared = [this.opts.nodes, this.opts.deploymentGrids, this.opts.serviceGrids, this.opts.statefulSetGrids];
    await Promise.all([...this.own, ...shared].map((i) => i.synced));
    this.log.info({ nodeUnits: this.units.size, nodes: this.nodes.size }, 'nodeunit caches synced');
    this.queue.add(SYNC_KEY);
    this.worker = this.work();
    const period = this.opts.resyncPeriodMs ?? 0;
    if (period > 0) {
      this.resyncTimer = setInterval(() => this.resync(), period);
      this.resyncTimer.unref();
    }
  }

  /** Queues a sync of everything (makes no write when nothing changed). */
  resync(): void {
    this.queue.add(SYNC_KEY);
  }

  async stop(): Promise<void> {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.queue.shutdown();
    for (const i of this.own) i.stop();
    await this.worker;
  }

  /** Resolves once nothing is queued or being synced. */
  async waitIdle(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.queue.idle()) {
      if (Date.now() > deadline) throw new Error('nodeunit controller did not become idle');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        // Every write of a sync waits for the grids' object writes anyway: computing it meanwhile
        // would only take the CPU from them (a new grid's objects, a new unit's).
        await this.writes.objectsSettled();
        if (await this.sync()) this.queue.addRateLimited(key);
        else this.queue.forget(key);
      } catch (err) {
        const retryInMs = this.queue.addRateLimited(key);
        this.log.error({ err, retryInMs }, 'nodeunit sync failed');
      } finally {
        this.queue.done(key);
      }
    }
  }

  /** One sync of every NodeUnit. Returns true when it should be retried. */
  private async sync(): Promise<boolean> {
    const started = performance.now();
    const units = this.units.list() as unknown as NodeUnit[];
    const membership = this.membership;
    let retry = false;

    // 1. Labels of declared units on their nodes: the nodes they claim and the nodes carrying a
    // label this controller set (every other node has nothing to settle).
    const claims = resolveClaims(units, membership.nodes, matchesLabels);
    const labelConflicts = new Map<string, string>();
    const candidates = new Set([...claims.desired.keys(), ...membership.owning]);
    for (const name of this.labelFailures.keys()) if (!candidates.has(name)) this.labelFailures.delete(name);
    for (const name of candidates) {
      const node = membership.nodes.get(name);
      if (!node) continue;
      const desired = claims.desired.get(name) ?? {};
      if (labelsSettled(node, desired)) {
        this.labelFailures.delete(node.name);
        continue;
      }
      const attempt = stableStringify({ desired, labels: node.labels });
      const failed = this.labelFailures.get(node.name);
      if (failed?.attempt === attempt) {
        labelConflicts.set(node.name, failed.message);
        continue;
      }
      try {
        const live = await this.writes.run('deferred', () =>
          this.opts.client.apply<NodeObject>(
            resourcePath(NODES, undefined, node.name),
            nodeLabelsApply(node.name, desired),
            NODE_LABEL_FIELD_MANAGER,
          ),
        );
        membership.set(nodeView(live));
        this.labelFailures.delete(node.name);
        this.log.info({ node: node.name, labels: desired }, 'node labels applied for declared NodeUnits');
      } catch (err) {
        if (isStatus(err, 404)) {
          membership.delete(node.name);
          continue;
        }
        if (!isStatus(err, 409)) throw err;
        // Another field manager owns a label with a different value: not ours to overwrite.
        const message = `node ${node.name}: ${(err as Error).message.replace(/^PATCH \S+: 409 /, '')}`;
        this.labelFailures.set(node.name, { attempt, message });
        labelConflicts.set(node.name, message);
        this.log.warn({ node: node.name, labels: desired, err }, 'node label owned by another manager; NodeUnit reports a conflict');
      }
    }
    for (const [node, message] of labelConflicts) {
      for (const unit of units) {
        if (!isDeclared(unit) || claims.desired.get(node)?.[unit.spec.key] !== unit.spec.value) continue;
        const list = claims.conflicts.get(unit.metadata.name!) ?? [];
        list.push(message);
        claims.conflicts.set(unit.metadata.name!, list);
      }
    }

    // 2. Discovered units: one per value of every key in use.
    const grids = [
      ...this.opts.deploymentGrids.list().map((g) => ({ g, kind: KIND_DEPLOYMENT_GRID })),
      ...this.opts.serviceGrids.list().map((g) => ({ g, kind: KIND_SERVICE_GRID })),
      ...this.opts.statefulSetGrids.list().map((g) => ({ g, kind: KIND_STATEFULSET_GRID })),
    ];
    // Every Service is read only when a topology annotation changed (thousands of them).
    this.annotatedKeys ??= keysInUse(
      [],
      [...this.services.list().map((s) => serviceTopology(s)), ...this.namespaces.list().map((n) => namespaceTopology(n))],
    );
    const keys = new Set(this.annotatedKeys);
    for (const { g } of grids) if (g.spec?.gridUniqKey) keys.add(g.spec.gridUniqKey as string);
    membership.indexKeys('nodeunits', new Set([...keys, ...units.map((u) => u.spec.key)]));
    const plan = planDiscovered(units, membership.pairs(keys));
    for (const p of plan.problems) this.log.warn({ key: p.key, value: p.value, reason: p.message }, 'no NodeUnit for this label value');
    const discovered: string[] = [];
    for (const u of units) this.created.seen(u.metadata.name!, u.metadata.resourceVersion);
    for (const unit of plan.create) {
      if (this.created.get(unit.metadata.name!, undefined)) continue;
      try {
        const answer = await this.writes.run('deferred', () =>
          this.opts.client.request<NodeUnit>('POST', resourcePath(NODE_UNITS), { body: unit, answer: 'metadata' }),
        );
        discovered.push(unit.metadata.name!);
        this.created.put(unit.metadata.name!, answer.metadata.resourceVersion, true);
        this.log.debug({ nodeUnit: unit.metadata.name, key: unit.spec.key, value: unit.spec.value }, 'NodeUnit discovered');
      } catch (err) {
        // Already there: the cache lags our own create; the next event brings it.
        if (!isStatus(err, 409)) throw err;
      }
    }
    const deleted: string[] = [];
    for (const name of plan.remove) {
      try {
        await this.writes.run('deferred', () =>
          this.opts.client.request('DELETE', resourcePath(NODE_UNITS, undefined, name), { answer: 'none' }),
        );
        deleted.push(name);
        this.statusWritten.seen(name, undefined);
        this.log.debug({ nodeUnit: name }, 'NodeUnit no longer in use; deleted');
      } catch (err) {
        if (!isStatus(err, 404)) throw err;
      }
    }
    // One line per sync, not per NodeUnit: a new label key discovers a unit per node value.
    if (discovered.length) this.log.info(namesLogged('nodeUnits', discovered), 'NodeUnits discovered');
    if (deleted.length) this.log.info(namesLogged('nodeUnits', deleted), 'NodeUnits no longer in use; deleted');

    // 3. Status of every unit that stays.
    const removed = new Set(plan.remove);
    const gridsByKey = new Map<string, NodeUnitGridRef[]>();
    for (const { g, kind } of grids) {
      const key = g.spec?.gridUniqKey as string | undefined;
      if (key && !g.metadata?.deletionTimestamp)
        push(gridsByKey, key, { kind, namespace: g.metadata!.namespace!, name: g.metadata!.name! });
    }
    const writes: { unit: NodeUnit; patch: Record<string, unknown>; status: NodeUnitStatus }[] = [];
    for (const unit of units) {
      const name = unit.metadata.name!;
      if (unit.metadata.deletionTimestamp || removed.has(name)) {
        this.settled.delete(name);
        continue;
      }
      // Until the cache shows our last write, the NodeUnit holds what we wrote: a membership that
      // went back meanwhile (a node relabelled away and back at once) must still be written, and
      // the echo of our write wakes no sync to notice it later.
      const inputs: SettledInputs = {
        unit,
        members: membership.members(unit.spec.key, unit.spec.value),
        grids: gridsByKey.get(unit.spec.key) ?? [],
        conflicts: claims.conflicts.get(name),
        live: this.statusWritten.current(name, unit.metadata.resourceVersion, unit.status ?? {}),
      };
      if (sameInputs(this.settled.get(name), inputs)) continue;
      const status = nodeUnitStatus(unit, inputs.members, inputs.grids, inputs.conflicts, inputs.live);
      const patch = statusPatch(inputs.live as Record<string, unknown>, status as Record<string, unknown>);
      if (!patch) {
        this.settled.set(name, inputs);
        continue;
      }
      this.settled.delete(name);
      writes.push({ unit, patch, status });
    }
    // NodeUnits deleted by someone else leave no entry behind.
    if (this.settled.size > units.length) {
      const names = new Set(units.map((u) => u.metadata.name));
      for (const name of this.settled.keys()) if (!names.has(name)) this.settled.delete(name);
    }
    // All at once: after a relabel the unit the node left and the one it joined reach the
    // wrappers in one round trip, not one after the other.
    const computed = performance.now();
    await forEachConcurrently(writes, UNIT_CONCURRENCY, async ({ unit, patch, status }) => {
      try {
        const answer = await this.writes.run('deferred', () =>
          this.opts.client.mergePatch<NodeUnit>(
            resourcePath(NODE_UNITS, undefined, unit.metadata.name, 'status'),
            { status: patch },
            FIELD_MANAGER,
            'metadata',
          ),
        );
        this.statusWritten.put(unit.metadata.name!, answer.metadata.resourceVersion, status);
      } catch (err) {
        if (isStatus(err, 404)) return;
        this.log.warn({ nodeUnit: unit.metadata.name, err }, 'NodeUnit status write failed');
        retry = true;
      }
    });
    // How long a relabel spends here before its status writes: the controller's part of the time
    // until every wrapper follows it.
    this.log.debug(
      {
        nodes: membership.nodes.size,
        nodeUnits: units.length,
        statusWrites: writes.length,
        computeMs: Math.round((computed - started) * 10) / 10,
        writeMs: Math.round((performance.now() - computed) * 10) / 10,
      },
      'nodeunits synced',
    );
    return retry;
  }
}
