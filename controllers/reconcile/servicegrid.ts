// ServiceGrid: the shared Service (topology-annotated, grid-wide: unit '') and one Service per
// unit. Its parts of the grid sync: rendering, recreating unit Services that switch between
// headless and ClusterIP (clusterIP is immutable), and readiness from ready endpoints.

import type { V1EndpointSlice, V1Node } from '@kubernetes/client-node';
import type { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import { KIND_SERVICE_GRID, type ServiceGrid, type ServiceGridUnitStatus } from '../api/v1alpha1.ts';
import { renderServiceGrid } from '../render/service.ts';
import { ObjectsByGrid } from './by-grid.ts';
import type { GridKindParts, RenderedObject } from './grid-sync.ts';
import { type GridObject, SERVICE_GRIDS, SERVICES } from './resources.ts';

type Grid = ServiceGrid & GridObject;

const SHARED = '';

export interface ServiceGridCaches {
  services: Informer<KubeObject>;
  endpointSlices: Informer<KubeObject>;
  nodes: Informer<KubeObject>;
}

function readyEndpointsBy(slices: V1EndpointSlice[], keyOf: (nodeName: string | undefined) => string | undefined): Map<string, number> {
  const counts = new Map<string, number>();
  for (const s of slices) {
    for (const e of s.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      const k = keyOf(e.nodeName);
      if (k !== undefined) counts.set(k, (counts.get(k) ?? 0) + 1);
    }
  }
  return counts;
}

export function serviceGridParts(caches: ServiceGridCaches): GridKindParts<Grid> {
  // A grid's slices (they carry its Services' labels): a sync reads its own, not every slice of the namespace per unit.
  const slicesByGrid = new ObjectsByGrid(caches.endpointSlices);
  return {
    kind: KIND_SERVICE_GRID,
    gridResource: SERVICE_GRIDS,
    objectResource: SERVICES,
    objectKind: 'Service',
    objects: caches.services,
    byGrid: new ObjectsByGrid(caches.services),
    render(grid, units) {
      const services = renderServiceGrid(grid, units);
      // Getters: the objects stay unrendered until the sync reads them (see renderServiceGrid).
      const out: RenderedObject[] = [
        {
          unit: SHARED,
          name: services.sharedName,
          template: '',
          get desired() {
            return services.shared as KubeObject;
          },
        },
      ];
      for (const r of services.units)
        out.push({
          unit: r.unit,
          name: r.name,
          template: r.template,
          get desired() {
            return r.service as KubeObject | undefined;
          },
          error: r.error,
        });
      return out;
    },
    // Per-unit Services cannot switch between headless and ClusterIP in place: clusterIP is immutable.
    replacement(unit, live, desired) {
      if (unit === SHARED) return undefined;
      return (live.spec?.clusterIP === 'None') !== (desired.spec?.clusterIP === 'None') ? 'recreate' : undefined;
    },
    // Ready endpoints per unit: from the unit's own Service when there is one, else from the shared
    // Service's endpoints by the unit of their node.
    unitReader({ grid, rendered }) {
      const ns = grid.metadata.namespace;
      const slicesByService = new Map<string, V1EndpointSlice[]>();
      for (const name of slicesByGrid.of(ns, grid.metadata.name)) {
        const slice = caches.endpointSlices.get(ns, name) as V1EndpointSlice | undefined;
        const service = slice?.metadata?.labels?.['kubernetes.io/service-name'];
        if (!slice || service === undefined) continue;
        const list = slicesByService.get(service);
        if (list) list.push(slice);
        else slicesByService.set(service, [slice]);
      }
      const slicesOf = (service: string) => slicesByService.get(service) ?? [];
      const sharedName = rendered.find((r) => r.unit === SHARED)!.name;
      const sharedSlices = slicesOf(sharedName);
      // Each endpoint's node looked up by name: a sync costs the endpoints, not the cluster's nodes.
      const key = grid.spec.gridUniqKey;
      const unitOfNode = (node: string | undefined) =>
        node ? (caches.nodes.get(undefined, node) as V1Node | undefined)?.metadata?.labels?.[key] || undefined : undefined;
      const sharedCounts = readyEndpointsBy(sharedSlices, unitOfNode);
      return (r) => {
        // A unit has its own Service when it has a name and no error (reading r.desired would render it).
        const own = r.name !== '' && !r.error;
        const ready = own ? (readyEndpointsBy(slicesOf(r.name), () => SHARED).get(SHARED) ?? 0) : (sharedCounts.get(r.unit) ?? 0);
        const status: ServiceGridUnitStatus = {
          name: r.unit,
          service: own ? r.name : '',
          readyEndpoints: ready,
          template: r.template,
        };
        return { status: status as unknown as Record<string, unknown>, ready: ready > 0, settled: ready > 0 };
      };
    },
    progress: {
      movingReason: 'WaitingForEndpoints',
      movingWhat: 'no ready endpoint yet in units',
      doneMessage: 'every unit has ready endpoints',
      readyWhat: 'units have ready endpoints',
    },
    extras: async ({ rendered }) => ({ fields: { service: rendered.find((r) => r.unit === SHARED)!.name } }),
  };
}
