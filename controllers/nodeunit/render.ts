// Pure rules of the NodeUnit controller: names, which units should exist, which node labels the
// declared units want (and who wins a contested node), and each unit's status. The controller
// (controller.ts) feeds these from its caches and writes what they return.

import type { V1Condition } from '@kubernetes/client-node';
import { ANY_KEY, type TopologyKeys } from '../../wrapper/filter.ts';
import type { LabelRequirement } from '../../wrapper/selectors.ts';
import {
  API_VERSION,
  CONDITION_CONFLICT,
  CONDITION_READY,
  KIND_NODE_UNIT,
  LABEL_MANAGED_BY,
  type LabelSelector,
  MANAGED_BY,
  type NodeUnit,
  type NodeUnitGridRef,
  type NodeUnitStatus,
} from '../api/v1alpha1.ts';
import { condition } from '../reconcile/conditions.ts';
import { jsonEqual } from '../render/common.ts';
import { assignNames, unitNamePart } from '../render/names.ts';

/** Longest DNS label: each of the two parts of a NodeUnit name. */
const NAME_PART_BUDGET = 63;

/**
 * The name of the NodeUnit of (key, value): `<key part>.<value part>`, each part a DNS label made
 * the way grid names make unit parts (as is when already a DNS label, else sanitised + hash of the
 * raw text). Neither part contains a dot, so the name splits back into its two parts and distinct
 * pairs get distinct names; `zone=site-17` → `zone.site-17`.
 */
export function nodeUnitName(key: string, value: string): string {
  return `${unitNamePart(key, NAME_PART_BUDGET)}.${unitNamePart(value, NAME_PART_BUDGET)}`;
}

/** `key=value`: neither a label key nor a label value can contain `=`, so this is a unique pair id. */
export function pairId(key: string, value: string): string {
  return `${key}=${value}`;
}

/**
 * Names for a set of pairs. A raw key or value that literally equals another's hashed form would
 * share a name: such pairs are reported as errors and never merged.
 */
export function nodeUnitNames(pairs: readonly { key: string; value: string }[]): Map<string, { name: string } | { error: string }> {
  const byId = new Map(pairs.map((p) => [pairId(p.key, p.value), p]));
  return assignNames([...byId.keys()], (id) => {
    const p = byId.get(id)!;
    return nodeUnitName(p.key, p.value);
  });
}

/** A node as the rules see it. */
export interface NodeView {
  name: string;
  labels: Record<string, string>;
  ready: boolean;
  /** Label keys this controller set on the node (and owns as its server-side apply field manager). */
  ownedLabels: string[];
}

/** Node annotation: the label keys this controller applied for declared NodeUnits, comma-separated. */
export const ANNOTATION_NODE_LABELS = 'servicegroup.io/nodeunit-labels';

/** Label keys this controller set on a node, from the annotation it applies with them. */
export function ownedLabelKeys(annotations: Record<string, string> | undefined): string[] {
  const v = annotations?.[ANNOTATION_NODE_LABELS];
  return v ? v.split(',').sort() : [];
}

export function isNodeReady(node: { status?: { conditions?: { type: string; status: string }[] } }): boolean {
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** A NodeUnit that names members: the controller labels them. */
export function isDeclared(unit: NodeUnit): boolean {
  return (unit.spec.nodes?.length ?? 0) > 0 || unit.spec.nodeSelector !== undefined;
}

/** A NodeUnit this controller created for a key in use; it deletes it when no longer needed. */
export function isDiscovered(unit: NodeUnit): boolean {
  return unit.metadata.labels?.[LABEL_MANAGED_BY] === MANAGED_BY && !isDeclared(unit);
}

/** Node label keys the cluster uses for units: grid keys and the topology keys of Services and Namespaces. */
export function keysInUse(gridKeys: Iterable<string | undefined>, topologies: Iterable<TopologyKeys>): Set<string> {
  const keys = new Set<string>();
  for (const k of gridKeys) if (k) keys.add(k);
  for (const t of topologies) if (t.kind === 'keys') for (const k of t.keys) if (k !== ANY_KEY) keys.add(k);
  return keys;
}

/** The metav1 LabelSelector as selector requirements (matchLabels and matchExpressions are ANDed). */
export function selectorRequirements(sel: LabelSelector): LabelRequirement[] {
  const reqs: LabelRequirement[] = [];
  for (const [key, value] of Object.entries(sel.matchLabels ?? {})) reqs.push({ key, op: '=', values: [value] });
  for (const e of sel.matchExpressions ?? []) {
    const op = ({ In: 'in', NotIn: 'notin', Exists: 'exists', DoesNotExist: '!exists' } as const)[e.operator];
    if (!op) throw new Error(`nodeSelector operator ${JSON.stringify(e.operator)} is not one of In, NotIn, Exists, DoesNotExist`);
    reqs.push({ key: e.key, op, values: e.values ?? [] });
  }
  return reqs;
}

const createdAt = (u: NodeUnit) => String(u.metadata.creationTimestamp ?? '');

/** Older first, then by name: the order in which declared units win a contested node. */
export function claimOrder(a: NodeUnit, b: NodeUnit): number {
  const ta = createdAt(a);
  const tb = createdAt(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name! < b.metadata.name! ? -1 : a.metadata.name! > b.metadata.name! ? 1 : 0;
}

export interface Claims {
  /** Node name → the labels the declared units want this controller to own there. */
  desired: Map<string, Record<string, string>>;
  /** NodeUnit name → conflict messages. */
  conflicts: Map<string, string[]>;
}

/**
 * Which node carries which declared label. A node claimed by several declared units of one key
 * with different values goes to the oldest claim; creation times have a resolution of a second,
 * so among units created in the same second the one whose value this controller already put on
 * the node keeps it, else the smaller name. Every unit in the contest reports it. The winner
 * never changes while the units stay (it holds the node from then on), so nothing flaps.
 * `matches` evaluates a unit's nodeSelector against a node's labels; `nodes` are by name.
 */
export function resolveClaims(
  units: readonly NodeUnit[],
  nodes: ReadonlyMap<string, NodeView>,
  matches: (reqs: LabelRequirement[], labels: Record<string, string>) => boolean,
): Claims {
  const declared = units.filter((u) => isDeclared(u) && !u.metadata.deletionTimestamp).sort(claimOrder);
  if (declared.length === 0) return { desired: new Map(), conflicts: new Map() };
  const byName = nodes;
  // node → key → claims in claim order
  const claims = new Map<string, Map<string, NodeUnit[]>>();
  const conflicts = new Map<string, string[]>();
  const report = (unit: NodeUnit, message: string) => {
    const list = conflicts.get(unit.metadata.name!) ?? [];
    list.push(message);
    conflicts.set(unit.metadata.name!, list);
  };
  for (const unit of declared) {
    const members = new Set((unit.spec.nodes ?? []).filter((n) => byName.has(n)));
    if (unit.spec.nodeSelector) {
      let reqs: LabelRequirement[];
      try {
        reqs = selectorRequirements(unit.spec.nodeSelector);
      } catch (err) {
        report(unit, (err as Error).message);
        continue;
      }
      for (const n of nodes.values()) if (matches(reqs, n.labels)) members.add(n.name);
    }
    for (const node of members) {
      let perKey = claims.get(node);
      if (!perKey) claims.set(node, (perKey = new Map()));
      const list = perKey.get(unit.spec.key) ?? [];
      list.push(unit);
      perKey.set(unit.spec.key, list);
    }
  }
  const desired = new Map<string, Record<string, string>>();
  for (const [node, perKey] of [...claims].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const labels: Record<string, string> = {};
    const view = byName.get(node)!;
    for (const [key, list] of perKey) {
      const first = createdAt(list[0]!);
      const holds = (u: NodeUnit) => view.ownedLabels.includes(key) && view.labels[key] === u.spec.value;
      const winner = list.find((u) => createdAt(u) === first && holds(u)) ?? list[0]!;
      labels[key] = winner.spec.value;
      const rivals = list.filter((u) => u.spec.value !== winner.spec.value);
      if (rivals.length === 0) continue;
      const names = (us: NodeUnit[]) => us.map((u) => `${u.metadata.name} (${key}=${u.spec.value})`).join(', ');
      report(winner, `node ${node} is also claimed by ${names(rivals)}; this unit claimed it first and keeps it`);
      for (const r of rivals)
        report(r, `node ${node} is kept by ${names([winner])}, which claimed it first; not labelled ${key}=${r.spec.value}`);
    }
    desired.set(node, labels);
  }
  return { desired, conflicts };
}

/** Whether the node's labels already are what the declared units want this controller to own. */
export function labelsSettled(node: NodeView, desired: Record<string, string>): boolean {
  const want = Object.keys(desired).sort();
  if (want.length !== node.ownedLabels.length || want.some((k, i) => node.ownedLabels[i] !== k)) return false;
  return want.every((k) => node.labels[k] === desired[k]);
}

/**
 * The server-side apply body that makes this controller own exactly `desired` on the node, and
 * records which keys those are. Applying without a key gives up its ownership: the label goes
 * unless another manager also set it; nothing of other managers is touched.
 */
export function nodeLabelsApply(node: string, desired: Record<string, string>): object {
  const keys = Object.keys(desired).sort();
  const metadata = keys.length
    ? { name: node, labels: desired, annotations: { [ANNOTATION_NODE_LABELS]: keys.join(',') } }
    : { name: node };
  return { apiVersion: 'v1', kind: 'Node', metadata };
}

export interface UnitPlan {
  create: NodeUnit[];
  /** Names of discovered units no longer wanted (or now covered by a user's unit). */
  remove: string[];
  /** Pairs that cannot get a NodeUnit, with why. */
  problems: { key: string; value: string; message: string }[];
}

/**
 * Which discovered NodeUnits to create and delete so that every wanted pair has exactly one
 * NodeUnit. A pair covered by a NodeUnit a user made (declared or not) needs none of ours.
 */
export function planDiscovered(existing: readonly NodeUnit[], wanted: readonly { key: string; value: string }[]): UnitPlan {
  const live = existing.filter((u) => !u.metadata.deletionTimestamp);
  const covered = new Set(live.filter((u) => !isDiscovered(u)).map((u) => pairId(u.spec.key, u.spec.value)));
  const names = nodeUnitNames(wanted);
  const taken = new Map(live.map((u) => [u.metadata.name!, u]));
  const keep = new Set<string>();
  const plan: UnitPlan = { create: [], remove: [], problems: [] };
  for (const { key, value } of wanted) {
    const id = pairId(key, value);
    if (covered.has(id)) continue;
    const n = names.get(id)!;
    if ('error' in n) {
      plan.problems.push({ key, value, message: n.error });
      continue;
    }
    const holder = taken.get(n.name);
    if (holder && pairId(holder.spec.key, holder.spec.value) !== id) {
      plan.problems.push({ key, value, message: `NodeUnit ${n.name} exists for ${pairId(holder.spec.key, holder.spec.value)}` });
      continue;
    }
    keep.add(n.name);
    if (!holder) plan.create.push(discoveredUnit(n.name, key, value));
  }
  for (const u of live) if (isDiscovered(u) && !keep.has(u.metadata.name!)) plan.remove.push(u.metadata.name!);
  return plan;
}

export function discoveredUnit(name: string, key: string, value: string): NodeUnit {
  return {
    apiVersion: API_VERSION,
    kind: KIND_NODE_UNIT,
    metadata: { name, labels: { [LABEL_MANAGED_BY]: MANAGED_BY } },
    spec: { key, value },
  };
}

/** At most this many grids are listed in a unit's status (all are counted). */
export const MAX_LISTED_GRIDS = 50;

/**
 * A unit's status: its members are the nodes that carry `key=value` (for a declared unit, once
 * labelled), the grids keyed on `key`, readiness, and for declared units the Conflict condition.
 */
export function nodeUnitStatus(
  unit: NodeUnit,
  members: readonly NodeView[],
  grids: readonly NodeUnitGridRef[],
  conflicts: readonly string[] | undefined,
  /**
   * The status the unit holds: the cache's, or what this controller last wrote while the cache
   * does not show it yet. Condition times are kept from it, so a sync before that write comes
   * back renders the same status as the write.
   */
  held: NodeUnitStatus | undefined = unit.status,
): NodeUnitStatus {
  const generation = unit.metadata.generation;
  const old = held?.conditions;
  const nodes = members.map((n) => n.name).sort();
  const ready = members.filter((n) => n.ready).length;
  const conditions: V1Condition[] = [
    nodes.length === 0
      ? condition(old, CONDITION_READY, false, 'NoNodes', `no node is labelled ${unit.spec.key}=${unit.spec.value}`, generation)
      : condition(
          old,
          CONDITION_READY,
          ready === nodes.length,
          ready === nodes.length ? 'AllNodesReady' : 'NodesNotReady',
          `${ready}/${nodes.length} nodes ready`,
          generation,
        ),
  ];
  if (isDeclared(unit)) {
    conditions.push(
      conflicts?.length
        ? condition(old, CONDITION_CONFLICT, true, 'NodeClaimConflict', conflicts.slice(0, 5).join('; '), generation)
        : condition(old, CONDITION_CONFLICT, false, 'NoConflict', '', generation),
    );
  }
  const sortedGrids = [...grids].sort((a, b) => (`${a.namespace}/${a.name}/${a.kind}` < `${b.namespace}/${b.name}/${b.kind}` ? -1 : 1));
  return {
    observedGeneration: generation,
    nodes,
    nodeCount: nodes.length,
    readyNodes: ready,
    notReadyNodes: nodes.length - ready,
    grids: sortedGrids.slice(0, MAX_LISTED_GRIDS),
    gridCount: grids.length,
    conditions,
  };
}

/**
 * The merge patch that turns a unit's status `old` into `next`: only the fields that differ (a
 * field `next` lacks is nulled), or undefined when nothing does. A relabel then sends the member
 * list and counts of a unit, not the rest of its status.
 */
export function statusPatch(old: Record<string, unknown>, next: Record<string, unknown>): Record<string, unknown> | undefined {
  const patch: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(old)) if (v !== undefined && next[k] === undefined) patch[k] = null;
  for (const [k, v] of Object.entries(next)) if (v !== undefined && !jsonEqual(old[k], v)) patch[k] = v;
  return Object.keys(patch).length ? patch : undefined;
}
