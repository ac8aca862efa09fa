// Stable pod names inside a NodeUnit. A StatefulSetGrid renders one StatefulSet per unit, named
// `<grid>-<unit part>` (controllers/render/names.ts), whose pods `<grid>-<unit part>-<i>` carry
// that name as their hostname in the EndpointSlices of the Service the StatefulSet names. DNS
// (CoreDNS's kubernetes plugin) answers `<hostname>.<service>.<ns>.svc.<domain>` from that field.
// In a topology-marked Service the wrapper serves the local unit's such hostnames as `<grid>-<i>`,
// so one name, `<grid>-0.<service>`, reaches the own unit's pod 0 on every node. Pure functions.
import { HASH_LENGTH, MAX_STATEFULSET_NAME, unitStatefulSetName } from '../controllers/render/names.ts';
import type { KubeObject } from '../kube/objects.ts';
import { ANY_KEY, inLocalUnit, type NodeUnitContext, type TopologyKeys } from './filter.ts';

const POD_OF_STATEFULSET = /^(.+)-(0|[1-9][0-9]*)$/;

/**
 * `<grid>-<i>` when `hostname` is pod `i` of the StatefulSet a grid renders for `unit`, else
 * undefined. The grid name is the prefix (ending before a `-`) for which the naming rule gives
 * back exactly the StatefulSet part of the hostname.
 */
export function unitPodAlias(hostname: string, unit: string): string | undefined {
  const m = POD_OF_STATEFULSET.exec(hostname);
  if (!m) return undefined;
  const statefulSet = m[1]!;
  for (let i = statefulSet.indexOf('-'); i > 0; i = statefulSet.indexOf('-', i + 1)) {
    const grid = statefulSet.slice(0, i);
    if (MAX_STATEFULSET_NAME - grid.length - 1 < HASH_LENGTH) break;
    if (unitStatefulSetName(grid, unit) === statefulSet) return `${grid}-${m[2]}`;
  }
  return undefined;
}

/**
 * The unit whose pods get short names on this node: the local node's value of the Service's first
 * topology key (a grid's `gridUniqKey`). None for unmarked Services, `"*"`, or a node without it.
 */
function localUnit(keys: TopologyKeys, ctx: NodeUnitContext): { key: string; unit: string } | undefined {
  if (keys.kind !== 'keys') return undefined;
  const key = keys.keys[0]!;
  const unit = key === ANY_KEY ? undefined : ctx.localLabels?.[key];
  return unit === undefined ? undefined : { key, unit };
}

type HostnamedEndpoint = { hostname?: string; nodeName?: string };

/**
 * Renames the hostnames of the local unit's StatefulSetGrid pods in already filtered slices.
 * Endpoints of other units (kept by a fallback key) keep their names: only one pod per ordinal
 * may answer to `<grid>-<i>`. Returns new objects; the inputs are not modified.
 */
export function aliasUnitPodHostnames(keys: TopologyKeys, slices: KubeObject[], ctx: NodeUnitContext): KubeObject[] {
  const local = localUnit(keys, ctx);
  if (!local) return slices;
  return slices.map((s) => {
    const eps = (s.endpoints as HostnamedEndpoint[] | undefined) ?? [];
    if (!eps.some((e) => e.hostname)) return s;
    return { ...s, endpoints: eps.map((e) => renamed(e, local, ctx)) };
  });
}

/** The same renaming for core/v1 Endpoints (`subsets[].addresses[]` and `notReadyAddresses[]`). */
export function aliasUnitPodHostnamesInEndpoints(keys: TopologyKeys, endpoints: KubeObject, ctx: NodeUnitContext): KubeObject {
  const local = localUnit(keys, ctx);
  const subsets = endpoints.subsets as { addresses?: HostnamedEndpoint[]; notReadyAddresses?: HostnamedEndpoint[] }[] | undefined;
  if (!local || !subsets) return endpoints;
  const rename = (list: HostnamedEndpoint[] | undefined) => list?.map((a) => renamed(a, local, ctx));
  return {
    ...endpoints,
    subsets: subsets.map((s) => ({
      ...s,
      ...(s.addresses ? { addresses: rename(s.addresses) } : {}),
      ...(s.notReadyAddresses ? { notReadyAddresses: rename(s.notReadyAddresses) } : {}),
    })),
  };
}

function renamed<E extends HostnamedEndpoint>(e: E, local: { key: string; unit: string }, ctx: NodeUnitContext): E {
  if (!e.hostname || !inLocalUnit(local.key, e.nodeName, ctx)) return e;
  const alias = unitPodAlias(e.hostname, local.unit);
  return alias === undefined ? e : { ...e, hostname: alias };
}
