// Which nodes carry which value of the label keys NodeUnits use, kept up to date one Node event at
// a time. A NodeUnit sync then costs what changed, not the cluster's node count: at 10,000 nodes
// regrouping every node on every relabel took tens of milliseconds, which a relabel waits for
// before any wrapper hears of it.

import { jsonEqual } from '../render/common.ts';
import type { NodeView } from './render.ts';

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

  /** Every node, by name. */
  get nodes(): ReadonlyMap<string, NodeView> {
    return this.views;
  }

  /** Nodes carrying a label this controller set for a declared NodeUnit. */
  get owning(): ReadonlySet<string> {
    return this.owners;
  }

  /** Starts over from `views` (the whole Node cache), keeping the indexed keys. */
  reset(views: Iterable<NodeView>): void {
    this.views.clear();
    this.owners.clear();
    for (const groups of this.groups.values()) groups.clear();
    for (const v of views) this.set(v);
  }

  /**
   * Groups nodes by exactly these label keys from now on. Only a key not indexed before costs a
   * pass over the nodes; the keys in use change when a grid or an annotation names a new one.
   */
  indexKeys(keys: ReadonlySet<string>): void {
    for (const k of this.groups.keys()) if (!keys.has(k)) this.groups.delete(k);
    for (const k of keys) {
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
    const old = this.views.get(view.name);
    if (old === view || (old && sameView(old, view))) return false;
    this.views.set(view.name, view);
    if (view.ownedLabels.length) this.owners.add(view.name);
    else this.owners.delete(view.name);
    for (const [key, groups] of this.groups) {
      const before = old?.labels[key];
      const after = view.labels[key];
      if (before !== undefined && before !== after) leave(groups, before, view.name);
      if (after === undefined) continue;
      const group = before === after ? groups.get(after) : undefined;
      if (!group) join(groups, after, view);
      else {
        group.members.set(view.name, view);
        if (old!.ready !== view.ready) group.sorted = undefined;
      }
    }
    return true;
  }

  /** A node is gone. Returns false when it was not known. */
  delete(name: string): boolean {
    const old = this.views.get(name);
    if (!old) return false;
    this.views.delete(name);
    this.owners.delete(name);
    for (const [key, groups] of this.groups) {
      const value = old.labels[key];
      if (value !== undefined) leave(groups, value, name);
    }
    return true;
  }

  /** The nodes labelled key=value, by name (the same array while they stay the same); key must be indexed. */
  members(key: string, value: string): readonly NodeView[] {
    const group = this.groups.get(key)?.get(value);
    if (!group) return [];
    group.sorted ??= [...group.members.values()].sort(byName);
    return group.sorted;
  }

  /** The distinct non-empty values of each of `keys` (indexed ones), sorted per key. */
  pairs(keys: Iterable<string>): { key: string; value: string }[] {
    const pairs: { key: string; value: string }[] = [];
    for (const key of keys) {
      const values = [...(this.groups.get(key)?.keys() ?? [])].filter((v) => v !== '').sort();
      for (const value of values) pairs.push({ key, value });
    }
    return pairs;
  }
}

function join(groups: Map<string, Group>, value: string, view: NodeView): void {
  const group = groups.get(value);
  if (!group) groups.set(value, { members: new Map([[view.name, view]]) });
  else {
    group.members.set(view.name, view);
    group.sorted = undefined;
  }
}

function leave(groups: Map<string, Group>, value: string, name: string): void {
  const group = groups.get(value);
  if (!group?.members.delete(name)) return;
  if (group.members.size === 0) groups.delete(value);
  else group.sorted = undefined;
}
