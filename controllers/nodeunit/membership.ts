// Which nodes carry which value of the label keys in use, kept up to date one Node event at a time,
// for both controllers: the grid controller's units of a key and the NodeUnit controller's members.
// A sync then costs what changed, not the cluster's node count: at 10,000 nodes regrouping every
// node on every relabel took tens of milliseconds, which a relabel waits for before any wrapper
// hears of it.

import type { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import { jsonEqual } from '../render/common.ts';
import { isNodeReady, type NodeView, ownedLabelKeys } from './render.ts';

/** What the NodeUnit rules read of a Node. */
export function nodeView(node: KubeObject): NodeView {
  return {
    name: node.metadata.name,
    labels: node.metadata.labels ?? {},
    ready: isNodeReady(node as { status?: { conditions?: { type: string; status: string }[] } }),
    ownedLabels: ownedLabelKeys(node.metadata.annotations),
  };
}

/** A node's view changed: `old` is undefined for a new node, `now` for a deleted one. */
export type MembershipListener = (old: NodeView | undefined, now: NodeView | undefined) => void;

interface Group {
  readonly members: Map<string, NodeView>;
  /** The members by name; the same array until a member joins, leaves or changes readiness. */
  sorted?: readonly NodeView[];
}

const byName = (a: NodeView, b: NodeView) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Whether two views of a node differ in anything a NodeUnit reads. */
function sameView(a: NodeView, b: NodeView): boolean {
  return a.ready === b.ready && jsonEqual(a.labels, b.labels) && jsonEqual(a.ownedLabels, b.ownedLabels);
}

export class NodeMembership {
  private readonly views = new Map<string, NodeView>();
  /** key → value → the nodes labelled key=value, for the indexed keys only. */
  private readonly groups = new Map<string, Map<string, Group>>();
  private readonly owners = new Set<string>();
  /** key → its distinct non-empty values, sorted; until a value appears or goes. */
  private readonly sortedValues = new Map<string, readonly string[]>();
  /** Each user's keys; the indexed keys are their union. */
  private readonly keysByUser = new Map<string, ReadonlySet<string>>();
  private readonly listeners: MembershipListener[] = [];

  /**
   * The membership of `nodes`' cache, kept by its events. Handlers added to the cache later see
   * the membership already updated by the event they are called for.
   */
  static following(nodes: Informer<KubeObject>): NodeMembership {
    const m = new NodeMembership();
    m.reset(nodes.list().map(nodeView));
    nodes.on((type, obj) => {
      if (type === 'delete') m.delete(obj.metadata.name);
      else m.set(nodeView(obj));
    });
    return m;
  }

  /** Calls `listener` after every change a NodeUnit or a grid reads (labels, readiness, presence). */
  onChange(listener: MembershipListener): void {
    this.listeners.push(listener);
  }

  /** Every node, by name. */
  get nodes(): ReadonlyMap<string, NodeView> {
    return this.views;
  }

  /** Nodes carrying a label this controller set for a declared NodeUnit. */
  get owning(): ReadonlySet<string> {
    return this.owners;
  }

  /** Starts over from `views` (the whole Node cache), keeping the indexed keys; tells no listener. */
  reset(views: Iterable<NodeView>): void {
    this.views.clear();
    this.owners.clear();
    this.sortedValues.clear();
    for (const groups of this.groups.values()) groups.clear();
    for (const v of views) this.update(v);
  }

  /**
   * `user` groups nodes by exactly these label keys from now on; the index holds every user's.
   * Only a key not indexed before costs a pass over the nodes; the keys in use change when a grid
   * or an annotation names a new one.
   */
  indexKeys(user: string, keys: ReadonlySet<string>): void {
    this.keysByUser.set(user, keys);
    const all = new Set<string>();
    for (const k of this.keysByUser.values()) for (const key of k) all.add(key);
    for (const k of this.groups.keys()) {
      if (all.has(k)) continue;
      this.groups.delete(k);
      this.sortedValues.delete(k);
    }
    for (const k of all) {
      if (this.groups.has(k)) continue;
      const groups = new Map<string, Group>();
      this.groups.set(k, groups);
      for (const v of this.views.values()) {
        const value = v.labels[k];
        if (value !== undefined) join(groups, value, v);
      }
    }
  }

  /** A node was added or changed. Returns false when nothing a NodeUnit reads changed. */
  set(view: NodeView): boolean {
    const old = this.update(view);
    if (old === false) return false;
    for (const l of this.listeners) l(old, view);
    return true;
  }

  /** `set` without telling the listeners: the previous view, or false when nothing changed. */
  private update(view: NodeView): NodeView | undefined | false {
    const old = this.views.get(view.name);
    if (old === view || (old && sameView(old, view))) return false;
    this.views.set(view.name, view);
    if (view.ownedLabels.length) this.owners.add(view.name);
    else this.owners.delete(view.name);
    for (const [key, groups] of this.groups) {
      const before = old?.labels[key];
      const after = view.labels[key];
      if (before !== undefined && before !== after && leave(groups, before, view.name)) this.sortedValues.delete(key);
      if (after === undefined) continue;
      const group = before === after ? groups.get(after) : undefined;
      if (!group) {
        if (join(groups, after, view)) this.sortedValues.delete(key);
      } else {
        group.members.set(view.name, view);
        if (old!.ready !== view.ready) group.sorted = undefined;
      }
    }
    return old;
  }

  /** A node is gone. Returns false when it was not known. */
  delete(name: string): boolean {
    const old = this.views.get(name);
    if (!old) return false;
    this.views.delete(name);
    this.owners.delete(name);
    for (const [key, groups] of this.groups) {
      const value = old.labels[key];
      if (value !== undefined && leave(groups, value, name)) this.sortedValues.delete(key);
    }
    for (const l of this.listeners) l(old, undefined);
    return true;
  }

  /** The nodes labelled key=value, by name (the same array while they stay the same); key must be indexed. */
  members(key: string, value: string): readonly NodeView[] {
    const group = this.groups.get(key)?.get(value);
    if (!group) return [];
    group.sorted ??= [...group.members.values()].sort(byName);
    return group.sorted;
  }

  /**
   * The distinct non-empty values of `key` on nodes, sorted: the same array until a value appears
   * or goes. A key no user indexed costs a pass over the nodes.
   */
  values(key: string): readonly string[] {
    const cached = this.sortedValues.get(key);
    if (cached) return cached;
    const groups = this.groups.get(key);
    if (!groups) {
      const values = new Set<string>();
      for (const v of this.views.values()) {
        const value = v.labels[key];
        if (value) values.add(value);
      }
      return [...values].sort();
    }
    const values = [...groups.keys()].filter((v) => v !== '').sort();
    this.sortedValues.set(key, values);
    return values;
  }

  /** The distinct non-empty values of each of `keys`, sorted per key. */
  pairs(keys: Iterable<string>): { key: string; value: string }[] {
    const pairs: { key: string; value: string }[] = [];
    for (const key of keys) for (const value of this.values(key)) pairs.push({ key, value });
    return pairs;
  }
}

/** Adds a member; returns true when the value is new. */
function join(groups: Map<string, Group>, value: string, view: NodeView): boolean {
  const group = groups.get(value);
  if (!group) {
    groups.set(value, { members: new Map([[view.name, view]]) });
    return true;
  }
  group.members.set(view.name, view);
  group.sorted = undefined;
  return false;
}

/** Removes a member; returns true when the value has no node left. */
function leave(groups: Map<string, Group>, value: string, name: string): boolean {
  const group = groups.get(value);
  if (!group?.members.delete(name)) return false;
  if (group.members.size === 0) {
    groups.delete(value);
    return true;
  }
  group.sorted = undefined;
  return false;
}
