// The node-local view: takes upstream objects as reflectors see them and keeps the served stores
// equal to "upstream with the NodeUnit rule applied". Indexes (slices by Service, Services by
// node) make each change recompute only the Services it can affect.
import type { Logger } from 'pino';
import { type KubeObject, objectKey } from '../kube/objects.ts';
import {
  effectiveTopologyKeys,
  type FilterStats,
  filterEndpointSlices,
  filterEndpoints,
  inheritsNamespaceKeys,
  type NodeUnitContext,
  namespaceTopologyKeysOf,
  type TopologyKeys,
} from './filter.ts';
import { SERVICE_NAME_LABEL } from './resources.ts';
import type { ServedResource } from './served.ts';
import { aliasUnitPodHostnames, aliasUnitPodHostnamesInEndpoints } from './unit-pod-names.ts';

export interface ServedStores {
  services: ServedResource;
  endpointslices: ServedResource;
  endpoints: ServedResource;
  nodes: ServedResource;
  servicecidrs: ServedResource;
  namespaces: ServedResource;
}

export interface ViewMetrics {
  endpoints(kept: number, dropped: number): void;
  setGauge(name: string, help: string, labels: Readonly<Record<string, string>>, value: number): void;
}

/**
 * Where the view learns which NodeUnit each node is in: `nodeunits` from the NodeUnits' member
 * lists (plus this node's own Node), so the wrapper's cost does not grow with the cluster's nodes;
 * `nodes` from every Node's labels, for clusters that run the wrapper without the controller.
 */
export type MembershipSource = 'nodes' | 'nodeunits';

/** Everything the view takes from upstream: the served resources, and NodeUnits. */
export type UpstreamResource = keyof ServedStores | 'nodeunits';

export const isMembershipSource = (s: string | undefined): s is MembershipSource => s === 'nodes' || s === 'nodeunits';

interface UnitMembers {
  key: string;
  value: string;
  nodes: Set<string>;
}

const addTo = <K, V>(m: Map<K, Set<V>>, k: K, v: V) => {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
};
const removeFrom = <K, V>(m: Map<K, Set<V>>, k: K, v: V) => {
  const s = m.get(k);
  if (s?.delete(v) && s.size === 0) m.delete(k);
};
// Lists instead of Sets for the per-Service indexes: a Service has one slice and a few nodes as a
// rule, and at 5,000 Services a Set each costs ~1 MiB of heap more than a small array.
const addToList = <K, V>(m: Map<K, V[]>, k: K, v: V) => {
  const l = m.get(k);
  if (!l) m.set(k, [v]);
  else if (!l.includes(v)) l.push(v);
};
const removeFromList = <K, V>(m: Map<K, V[]>, k: K, v: V) => {
  const l = m.get(k);
  const i = l ? l.indexOf(v) : -1;
  if (i < 0) return;
  if (l!.length === 1) m.delete(k);
  else l!.splice(i, 1);
};
/** Distinct topology key lists kept before the cache of shared ones is emptied (a bound, never reached in practice). */
const MAX_SHARED_TOPOLOGIES = 1024;
const sameLabels = (a: Record<string, string> | undefined, b: Record<string, string> | undefined) =>
  JSON.stringify(Object.entries(a ?? {}).sort()) === JSON.stringify(Object.entries(b ?? {}).sort());

export class NodeUnitView {
  readonly nodeName: string;
  readonly served: ServedStores;
  private readonly log: Logger;
  private readonly metrics: ViewMetrics | undefined;
  private readonly topology = new Map<string, TopologyKeys>();
  /** Topology keys Namespaces give their Services (namespace annotation). */
  private readonly namespaceTopology = new Map<string, TopologyKeys>();
  /** Services without an annotation of their own, by namespace: they follow their Namespace's. */
  private readonly inheriting = new Map<string, Set<string>>();
  /** Services whose endpoints are filtered (valid topology keys). */
  private readonly marked = new Set<string>();
  /**
   * Upstream inputs of the rule, as JSON: parsed again only when their Service is recomputed,
   * which costs less than keeping thousands of parsed objects on every node.
   */
  private readonly slices = new Map<string, string>();
  private readonly sliceService = new Map<string, string>();
  private readonly slicesByService = new Map<string, string[]>();
  private readonly endpoints = new Map<string, string>();
  private readonly nodeLabels = new Map<string, Record<string, string>>();
  readonly membership: MembershipSource;
  /** NodeUnit name → its key, value and member nodes (membership `nodeunits`). */
  private readonly units = new Map<string, UnitMembers>();
  /** NodeUnit name → the object as JSON, for a saved state (membership `nodeunits`). */
  private readonly unitObjects = new Map<string, string>();
  /** Node → the labels its NodeUnits say it has (membership `nodeunits`). */
  private readonly unitLabels = new Map<string, Record<string, string>>();
  /** Since when this node's own labels and its NodeUnits disagree (0: they agree). */
  private staleSinceMs = 0;
  /** Nodes with an endpoint of the Service (its slices' and Endpoints'), each once. */
  private readonly nodesOfService = new Map<string, string[]>();
  /**
   * One object per distinct topology (most Services of a cluster share a few annotation values):
   * thousands of Services then hold a reference each instead of a parsed copy each.
   */
  private readonly sharedTopologies = new Map<string, TopologyKeys>();
  private readonly servicesByNode = new Map<string, Set<string>>();
  private readonly stats = new Map<string, FilterStats>();
  private kept = 0;
  private dropped = 0;
  /** How many Service recomputations ran; tests use it to check work stays proportional. */
  recomputations = 0;

  constructor(nodeName: string, served: ServedStores, log: Logger, metrics?: ViewMetrics, membership: MembershipSource = 'nodes') {
    this.nodeName = nodeName;
    this.membership = membership;
    this.served = served;
    this.log = log;
    this.metrics = metrics;
    if (membership === 'nodeunits') this.reportStaleSince();
  }

  private readonly lookupNode = (n: string) => this.nodeLabels.get(n);
  private context(): NodeUnitContext {
    return { localLabels: this.nodeLabels.get(this.nodeName), nodeLabels: this.lookupNode };
  }

  upsert(resource: string, obj: KubeObject): void {
    this.change(resource, obj, false);
  }
  delete(resource: string, obj: KubeObject): void {
    this.change(resource, obj, true);
  }

  private change(resource: string, obj: KubeObject, deleted: boolean): void {
    const key = objectKey(obj);
    switch (resource) {
      case 'services':
        this.served.services.apply(key, deleted ? undefined : obj);
        this.serviceChanged(key, deleted ? undefined : obj);
        break;
      case 'endpointslices':
        this.sliceChanged(key, deleted ? undefined : obj);
        break;
      case 'endpoints':
        if (deleted) this.endpoints.delete(key);
        else this.endpoints.set(key, JSON.stringify(obj));
        this.recompute(key, { input: 'endpoints', key, obj: deleted ? undefined : obj });
        break;
      case 'nodes':
        this.served.nodes.apply(key, deleted ? undefined : obj);
        // From NodeUnits, only this node's own labels come from its Node (the others come from
        // NodeUnits, and their Nodes are not watched).
        if (this.membership === 'nodes' || key === this.nodeName) {
          this.nodeChanged(key, deleted ? undefined : (obj.metadata.labels ?? {}));
          if (this.membership === 'nodeunits') this.checkLocalMembership();
        }
        break;
      case 'nodeunits':
        // A saved state written with the other membership source may still hold NodeUnits.
        if (this.membership === 'nodeunits') this.unitChanged(key, deleted ? undefined : obj);
        break;
      case 'servicecidrs':
        this.served.servicecidrs.apply(key, deleted ? undefined : obj);
        break;
      case 'namespaces':
        this.served.namespaces.apply(key, deleted ? undefined : obj);
        this.namespaceChanged(key, deleted ? undefined : obj);
        break;
      default:
        throw new Error(`view: unknown resource ${resource}`);
    }
  }

  private serviceChanged(key: string, svc: KubeObject | undefined): void {
    const ns = key.slice(0, Math.max(0, key.indexOf('/')));
    if (svc && inheritsNamespaceKeys(svc)) addTo(this.inheriting, ns, key);
    else removeFrom(this.inheriting, ns, key);
    this.topologyChanged(key, effectiveTopologyKeys(svc, this.namespaceTopology.get(ns) ?? { kind: 'none' }));
  }

  private namespaceChanged(name: string, namespace: KubeObject | undefined): void {
    const next = namespaceTopologyKeysOf(namespace);
    const prev = this.namespaceTopology.get(name) ?? { kind: 'none' };
    if (JSON.stringify(prev) === JSON.stringify(next)) return;
    if (next.kind === 'invalid')
      this.log.warn({ namespace: name, error: next.error }, 'namespace topology annotation invalid; its Services are not filtered');
    if (next.kind === 'none') this.namespaceTopology.delete(name);
    else this.namespaceTopology.set(name, next);
    for (const svc of [...(this.inheriting.get(name) ?? [])]) this.topologyChanged(svc, next);
  }

  private topologyChanged(key: string, next: TopologyKeys): void {
    const prev = this.topology.get(key) ?? { kind: 'none' };
    if (next.kind === 'invalid' && JSON.stringify(prev) !== JSON.stringify(next)) {
      this.log.warn({ service: key, error: next.error }, 'topology annotation invalid; service endpoints are not filtered');
    }
    if (next.kind === 'none') this.topology.delete(key);
    else this.topology.set(key, this.shared(next));
    if (next.kind === 'keys') this.marked.add(key);
    else this.marked.delete(key);
    if (JSON.stringify(prev) !== JSON.stringify(next)) this.recompute(key);
  }

  private shared(t: TopologyKeys): TopologyKeys {
    const id = JSON.stringify(t);
    const known = this.sharedTopologies.get(id);
    if (known) return known;
    if (this.sharedTopologies.size >= MAX_SHARED_TOPOLOGIES) this.sharedTopologies.clear();
    this.sharedTopologies.set(id, t);
    return t;
  }

  private sliceChanged(key: string, slice: KubeObject | undefined): void {
    const oldService = this.sliceService.get(key);
    const ns = key.slice(0, Math.max(0, key.indexOf('/')));
    const svcName = slice?.metadata.labels?.[SERVICE_NAME_LABEL];
    const newService = slice && svcName ? `${ns}/${svcName}` : undefined;
    if (oldService !== undefined && oldService !== newService) {
      removeFromList(this.slicesByService, oldService, key);
      this.sliceService.delete(key);
    }
    if (slice) this.slices.set(key, JSON.stringify(slice));
    else this.slices.delete(key);
    if (newService !== undefined) {
      addToList(this.slicesByService, newService, key);
      this.sliceService.set(key, newService);
    }
    if (oldService !== undefined && oldService !== newService) this.recompute(oldService);
    if (newService !== undefined) {
      this.recompute(newService, { input: 'slice', key, obj: slice });
    } else {
      // A slice that names no Service belongs to no topology rule: served as is.
      this.served.endpointslices.apply(key, slice);
    }
  }

  /**
   * A NodeUnit's member list changed: the nodes that joined or left get their derived labels
   * updated, which recomputes only the Services with endpoints on them.
   */
  private unitChanged(name: string, unit: KubeObject | undefined): void {
    const old = this.units.get(name);
    const spec = unit?.spec as { key?: string; value?: string } | undefined;
    const members = (unit?.status as { nodes?: string[] } | undefined)?.nodes;
    const next: UnitMembers | undefined =
      spec?.key && spec.value ? { key: spec.key, value: spec.value, nodes: new Set(members ?? []) } : undefined;
    if (next) this.units.set(name, next);
    else this.units.delete(name);
    // Kept as the parts the view reads, for a saved state to rebuild membership from.
    if (next)
      this.unitObjects.set(
        name,
        JSON.stringify({ metadata: { name }, spec: { key: next.key, value: next.value }, status: { nodes: [...next.nodes] } }),
      );
    else this.unitObjects.delete(name);
    const touched = new Set<string>();
    for (const n of old?.nodes ?? []) {
      if (next && next.key === old!.key && next.value === old!.value && next.nodes.has(n)) continue;
      const labels = this.unitLabels.get(n);
      // Only if still ours: another unit of the key may have claimed the node already.
      if (labels?.[old!.key] !== old!.value) continue;
      delete labels[old!.key];
      if (Object.keys(labels).length === 0) this.unitLabels.delete(n);
      touched.add(n);
    }
    for (const n of next?.nodes ?? []) {
      let labels = this.unitLabels.get(n);
      if (!labels) this.unitLabels.set(n, (labels = {}));
      if (labels[next!.key] === next!.value) continue;
      labels[next!.key] = next!.value;
      touched.add(n);
    }
    for (const n of touched)
      if (n !== this.nodeName) this.nodeChanged(n, this.unitLabels.has(n) ? { ...this.unitLabels.get(n) } : undefined);
    if (touched.size > 0)
      this.metrics?.setGauge(
        'servicegroup_wrapper_membership_updated_timestamp_seconds',
        'When NodeUnit membership last changed, as seen by this wrapper (membership nodeunits).',
        {},
        Date.now() / 1000,
      );
    this.checkLocalMembership();
  }

  /**
   * This node's own labels (from its Node) against what the NodeUnits say about it. They disagree
   * for a moment after a relabel; for long only while the controller is down or behind, and then
   * other nodes' changes are not seen either: the gauge says since when.
   */
  private checkLocalMembership(): void {
    const own = this.nodeLabels.get(this.nodeName);
    if (!own) return;
    const derived = this.unitLabels.get(this.nodeName) ?? {};
    let agree = true;
    for (const u of this.units.values()) {
      if ((own[u.key] === u.value) !== u.nodes.has(this.nodeName)) agree = false;
    }
    for (const [k, v] of Object.entries(derived)) if (own[k] !== v) agree = false;
    const since = agree ? 0 : this.staleSinceMs || Date.now();
    if (since === this.staleSinceMs) return;
    this.staleSinceMs = since;
    if (!agree) this.log.info({ node: this.nodeName }, "NodeUnits disagree with this node's labels; waiting for the controller");
    this.reportStaleSince();
  }

  private reportStaleSince(): void {
    this.metrics?.setGauge(
      'servicegroup_wrapper_membership_stale_since_timestamp_seconds',
      "Since when this node's labels and its NodeUnits disagree (0: they agree). Long-lasting means the NodeUnit controller is down or behind.",
      {},
      this.staleSinceMs / 1000,
    );
  }

  private nodeChanged(name: string, labels: Record<string, string> | undefined): void {
    const old = this.nodeLabels.get(name);
    if (labels) this.nodeLabels.set(name, labels);
    else this.nodeLabels.delete(name);
    if ((old === undefined) === (labels === undefined) && sameLabels(old, labels)) return;
    // The local node moving changes every marked Service; another node only those with
    // endpoints on it.
    const affected = name === this.nodeName ? this.marked : this.servicesByNode.get(name);
    if (!affected) return;
    for (const svc of [...affected]) if (this.marked.has(svc)) this.recompute(svc);
  }

  /**
   * Recomputes the served slices and Endpoints of one Service from its current inputs. `fresh` is
   * the input that just changed, already parsed.
   */
  private recompute(svcKey: string, fresh?: { input: 'slice' | 'endpoints'; key: string; obj: KubeObject | undefined }): void {
    const parsed = (input: 'slice' | 'endpoints', k: string, json: string | undefined): KubeObject | undefined =>
      fresh?.input === input && fresh.key === k ? fresh.obj : json === undefined ? undefined : (JSON.parse(json) as KubeObject);
    this.recomputations++;
    const keys = this.topology.get(svcKey) ?? { kind: 'none' };
    const effective: TopologyKeys = keys.kind === 'keys' ? keys : { kind: 'none' };
    const ctx = this.context();
    const nodes = new Set<string>();
    let kept = 0;
    let dropped = 0;

    const sliceKeys = [...(this.slicesByService.get(svcKey) ?? [])];
    const inputs = sliceKeys.map((k) => parsed('slice', k, this.slices.get(k))!);
    for (const s of inputs) {
      for (const e of (s.endpoints as { nodeName?: string }[] | undefined) ?? []) if (e.nodeName) nodes.add(e.nodeName);
    }
    const r = filterEndpointSlices(effective, inputs, ctx);
    const servedSlices = aliasUnitPodHostnames(effective, r.slices, ctx);
    for (const [i, s] of servedSlices.entries()) this.served.endpointslices.apply(sliceKeys[i]!, s);
    if (effective.kind === 'keys') {
      kept += r.stats.kept;
      dropped += r.stats.dropped;
    }

    const ep = parsed('endpoints', svcKey, this.endpoints.get(svcKey));
    if (ep) {
      for (const s of (ep.subsets as { addresses?: { nodeName?: string }[]; notReadyAddresses?: { nodeName?: string }[] }[] | undefined) ??
        []) {
        for (const a of [...(s.addresses ?? []), ...(s.notReadyAddresses ?? [])]) if (a.nodeName) nodes.add(a.nodeName);
      }
      const f = filterEndpoints(effective, ep, ctx);
      this.served.endpoints.apply(svcKey, aliasUnitPodHostnamesInEndpoints(effective, f.endpoints, ctx));
    } else {
      this.served.endpoints.apply(svcKey, undefined);
    }

    const oldNodes = new Set(this.nodesOfService.get(svcKey));
    for (const n of oldNodes) if (!nodes.has(n)) removeFrom(this.servicesByNode, n, svcKey);
    for (const n of nodes) if (!oldNodes.has(n)) addTo(this.servicesByNode, n, svcKey);
    if (nodes.size > 0) this.nodesOfService.set(svcKey, [...nodes]);
    else this.nodesOfService.delete(svcKey);

    const old = this.stats.get(svcKey) ?? { kept: 0, dropped: 0 };
    this.kept += kept - old.kept;
    this.dropped += dropped - old.dropped;
    if (kept || dropped) this.stats.set(svcKey, { kept, dropped });
    else this.stats.delete(svcKey);
    this.metrics?.endpoints(this.kept, this.dropped);
  }

  /**
   * The upstream objects of one resource the view holds, as JSON: what a saved state keeps to
   * rebuild the view. Services, Nodes and ServiceCIDRs are served as they came.
   */
  upstreamObjects(resource: UpstreamResource): Iterable<string | Buffer> {
    if (resource === 'endpointslices') return this.slices.values();
    if (resource === 'endpoints') return this.endpoints.values();
    if (resource === 'nodeunits') return this.unitObjects.values();
    return this.served[resource].list(undefined).items;
  }

  get endpointTotals(): FilterStats {
    return { kept: this.kept, dropped: this.dropped };
  }
}
