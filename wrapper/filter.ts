// The NodeUnit rule: which endpoints of a topology-marked Service a node may route to.
// Pure functions of (Service, its endpoints, node labels, local node) so the rule can be tested
// alone and recomputed for any single Service when one of its inputs changes.
import { ANNOTATION_TOPOLOGY_KEYS, ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE } from '../controllers/api/v1alpha1.ts';
import type { KubeObject } from '../kube/objects.ts';

export const ANY_KEY = '*';

export type TopologyKeys =
  | { kind: 'none' }
  | { kind: 'keys'; keys: string[]; source: string }
  | { kind: 'invalid'; source: string; error: string };

/**
 * Reads the topology keys of a Service. Our annotation wins over SuperEdge's when both are set.
 * An empty list means "not filtered", like an absent annotation.
 */
export function topologyKeysOf(service: KubeObject | undefined): TopologyKeys {
  const annotations = service?.metadata?.annotations;
  if (!annotations) return { kind: 'none' };
  const source = Object.hasOwn(annotations, ANNOTATION_TOPOLOGY_KEYS)
    ? ANNOTATION_TOPOLOGY_KEYS
    : Object.hasOwn(annotations, ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE)
      ? ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE
      : undefined;
  if (source === undefined) return { kind: 'none' };
  const raw = annotations[source]!;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { kind: 'invalid', source, error: `annotation ${source} is not JSON: ${JSON.stringify(raw)}` };
  }
  if (!Array.isArray(parsed) || !parsed.every((k) => typeof k === 'string' && k !== '')) {
    return { kind: 'invalid', source, error: `annotation ${source} must be a JSON array of label keys, got ${raw}` };
  }
  if (parsed.length === 0) return { kind: 'none' };
  return { kind: 'keys', keys: parsed as string[], source };
}

/** Whether the object carries a topology annotation in either spelling, even an empty or invalid one. */
export function hasTopologyAnnotation(obj: KubeObject | undefined): boolean {
  const a = obj?.metadata?.annotations;
  return !!a && (Object.hasOwn(a, ANNOTATION_TOPOLOGY_KEYS) || Object.hasOwn(a, ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE));
}

/**
 * The topology keys a Namespace gives its Services: only our annotation (SuperEdge's spelling
 * never existed on Namespaces, and a bare `topologyKeys` there may mean something else).
 */
export function namespaceTopologyKeysOf(namespace: KubeObject | undefined): TopologyKeys {
  const value = namespace?.metadata?.annotations?.[ANNOTATION_TOPOLOGY_KEYS];
  if (value === undefined) return { kind: 'none' };
  return topologyKeysOf({ metadata: { name: namespace!.metadata.name, annotations: { [ANNOTATION_TOPOLOGY_KEYS]: value } } });
}

/**
 * Whether a Service takes its Namespace's keys: when it has no annotation of its own (so `[]`
 * opts a Service out). The apiserver's own Service, default/kubernetes, never does: its endpoints
 * are the apiservers, on no node, and would all be removed.
 */
export function inheritsNamespaceKeys(service: KubeObject): boolean {
  const { namespace, name } = service.metadata;
  return !hasTopologyAnnotation(service) && !(namespace === 'default' && name === 'kubernetes');
}

/** The keys that decide a Service's endpoints: its own annotation's, or its Namespace's when it inherits them. */
export function effectiveTopologyKeys(service: KubeObject | undefined, namespaceKeys: TopologyKeys): TopologyKeys {
  if (!service) return { kind: 'none' };
  return inheritsNamespaceKeys(service) ? namespaceKeys : topologyKeysOf(service);
}

export type NodeLabelsLookup = (nodeName: string) => Record<string, string> | undefined;

export interface NodeUnitContext {
  /** Labels of the node this wrapper serves; undefined while the node is unknown. */
  localLabels: Record<string, string> | undefined;
  nodeLabels: NodeLabelsLookup;
}

/** An endpoint as the rule sees it: where it runs and whether it can take traffic. */
export interface EndpointPlacement {
  nodeName: string | undefined;
  ready: boolean;
}

/** Whether an endpoint on `nodeName` belongs to the local node's unit under `key`. */
export function inLocalUnit(key: string, nodeName: string | undefined, ctx: NodeUnitContext): boolean {
  if (key === ANY_KEY) return true;
  // Without a node name, or for a node we do not know, membership cannot be proven: excluded.
  if (nodeName === undefined || nodeName === '') return false;
  const local = ctx.localLabels?.[key];
  // A local node without the key belongs to no unit of that key: the key keeps nothing.
  if (local === undefined) return false;
  const labels = ctx.nodeLabels(nodeName);
  return labels !== undefined && labels[key] === local;
}

/**
 * Chooses the key that decides which endpoints stay: the first key under which at least one
 * ready endpoint of the whole Service (all its slices) remains. When no key has a ready
 * endpoint, the first key decides, so the node keeps its own unit's not-ready/terminating
 * endpoints (kube-proxy's terminating fallback) and never gains another unit's.
 */
export function chooseKey(keys: string[], endpoints: Iterable<EndpointPlacement>, ctx: NodeUnitContext): string {
  const list = [...endpoints];
  for (const key of keys) {
    if (list.some((e) => e.ready && inLocalUnit(key, e.nodeName, ctx))) return key;
  }
  return keys[0]!;
}

/**
 * Which endpoints a node keeps: by the key `chooseKey` picks, for our annotation (an ordered
 * fallback); under any of the keys, for SuperEdge's `topologyKeys`, as SuperEdge's own wrapper
 * reads it, so that its Services behave the same after a switch.
 */
function localRule(keys: { keys: string[]; source: string }, endpoints: EndpointPlacement[], ctx: NodeUnitContext) {
  if (keys.source === ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE)
    return (nodeName: string | undefined) => keys.keys.some((k) => inLocalUnit(k, nodeName, ctx));
  const key = chooseKey(keys.keys, endpoints, ctx);
  return (nodeName: string | undefined) => inLocalUnit(key, nodeName, ctx);
}

export interface FilterStats {
  kept: number;
  dropped: number;
}

type SliceEndpoint = { nodeName?: string; conditions?: { ready?: boolean | null } };

/** EndpointSlice API: a nil `ready` must be read as ready (unknown state). */
const sliceEndpointReady = (e: SliceEndpoint) => e.conditions?.ready !== false;

/**
 * Filters all EndpointSlices of one Service. Returns new slice objects (inputs untouched), one per
 * input slice and in the same order: a slice left with no endpoints is still returned, with an
 * empty list, because an omitted slice would leave stale rules in kube-proxy.
 */
export function filterEndpointSlices(
  keys: TopologyKeys,
  slices: KubeObject[],
  ctx: NodeUnitContext,
): { slices: KubeObject[]; stats: FilterStats } {
  const all = slices.flatMap((s) => (s.endpoints as SliceEndpoint[] | undefined) ?? []);
  if (keys.kind !== 'keys') return { slices, stats: { kept: all.length, dropped: 0 } };
  const local = localRule(
    keys,
    all.map((e) => ({ nodeName: e.nodeName, ready: sliceEndpointReady(e) })),
    ctx,
  );
  const stats = { kept: 0, dropped: 0 };
  const out = slices.map((s) => {
    const eps = (s.endpoints as SliceEndpoint[] | undefined) ?? [];
    const kept = eps.filter((e) => local(e.nodeName));
    stats.kept += kept.length;
    stats.dropped += eps.length - kept.length;
    return { ...s, endpoints: kept };
  });
  return { slices: out, stats };
}

type EndpointAddress = { nodeName?: string };
type EndpointSubset = { addresses?: EndpointAddress[]; notReadyAddresses?: EndpointAddress[]; ports?: unknown[] };

/**
 * Filters a core/v1 Endpoints object by the same rule (ready = `addresses`, not ready =
 * `notReadyAddresses`). Subsets left with no address are removed, as the apiserver would
 * normalise them; the object itself is always returned.
 */
export function filterEndpoints(
  keys: TopologyKeys,
  endpoints: KubeObject,
  ctx: NodeUnitContext,
): { endpoints: KubeObject; stats: FilterStats } {
  const subsets = (endpoints.subsets as EndpointSubset[] | undefined) ?? [];
  const count = (s: EndpointSubset) => (s.addresses?.length ?? 0) + (s.notReadyAddresses?.length ?? 0);
  const total = subsets.reduce((n, s) => n + count(s), 0);
  if (keys.kind !== 'keys') return { endpoints, stats: { kept: total, dropped: 0 } };
  const placements: EndpointPlacement[] = subsets.flatMap((s) => [
    ...(s.addresses ?? []).map((a) => ({ nodeName: a.nodeName, ready: true })),
    ...(s.notReadyAddresses ?? []).map((a) => ({ nodeName: a.nodeName, ready: false })),
  ]);
  const local = localRule(keys, placements, ctx);
  const keep = (list: EndpointAddress[] | undefined) => list?.filter((a) => local(a.nodeName));
  const out: EndpointSubset[] = [];
  for (const s of subsets) {
    const addresses = keep(s.addresses);
    const notReadyAddresses = keep(s.notReadyAddresses);
    const f: EndpointSubset = { ...s };
    if (addresses?.length) f.addresses = addresses;
    else delete f.addresses;
    if (notReadyAddresses?.length) f.notReadyAddresses = notReadyAddresses;
    else delete f.notReadyAddresses;
    if (count(f) > 0) out.push(f);
  }
  const kept = out.reduce((n, s) => n + count(s), 0);
  const result: KubeObject = { ...endpoints };
  if (out.length > 0) result.subsets = out;
  else delete result.subsets;
  return { endpoints: result, stats: { kept, dropped: total - kept } };
}
