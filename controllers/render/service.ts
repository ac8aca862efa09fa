// ServiceGrid rendering: the shared Service `<grid>-svc` marked with the topology keys, and one
// Service per unit selecting only that unit's pods. Pure: no I/O.

import type { V1Service, V1ServiceSpec } from '@kubernetes/client-node';
import { ANNOTATION_TOPOLOGY_KEYS, LABEL_UNIT, REASON_INVALID_TEMPLATE, REASON_NAME_COLLISION, type ServiceGrid } from '../api/v1alpha1.ts';
import { chooseTemplate, clone, controllerRef, gridLabels, once, withRenderHash } from './common.ts';
import type { UnitError } from './deployment.ts';
import { assignNames, sharedServiceName, unitServiceName } from './names.ts';

export interface RenderedUnitService {
  unit: string;
  /** Service name; empty with `unitServices: None` or when no name could be assigned. */
  name: string;
  template: string;
  service?: V1Service;
  error?: UnitError;
}

export interface RenderedServiceGrid {
  sharedName: string;
  shared: V1Service;
  units: RenderedUnitService[];
}

export function topologyKeys(grid: ServiceGrid): string[] {
  return [grid.spec.gridUniqKey, ...(grid.spec.topologyFallback ?? [])];
}

export function renderSharedService(grid: ServiceGrid): V1Service {
  return withRenderHash<V1Service>({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: sharedServiceName(grid.metadata.name!),
      namespace: grid.metadata.namespace,
      labels: gridLabels(grid),
      annotations: { [ANNOTATION_TOPOLOGY_KEYS]: JSON.stringify(topologyKeys(grid)) },
      ownerReferences: [controllerRef(grid)],
    },
    spec: clone(grid.spec.template),
  });
}

/**
 * A unit's Service keeps only what addresses pods (selector, ports, families): it is internal,
 * so node ports, load balancers and external IPs of the template stay on the shared Service. It
 * says it is not unit-local (`[]`): it addresses one unit's pods from every unit, also in a
 * Namespace whose annotation makes its other Services unit-local.
 */
export function renderUnitService(grid: ServiceGrid, unit: string, name: string, template: V1ServiceSpec): V1Service {
  const headless = (grid.spec.unitServices ?? 'Headless') === 'Headless';
  const spec: V1ServiceSpec = {
    type: 'ClusterIP',
    selector: { ...template.selector, [LABEL_UNIT]: unit },
    ports: template.ports?.map(({ nodePort: _nodePort, ...port }) => port),
  };
  if (headless) spec.clusterIP = 'None';
  if (template.publishNotReadyAddresses !== undefined) spec.publishNotReadyAddresses = template.publishNotReadyAddresses;
  if (template.ipFamilyPolicy !== undefined) spec.ipFamilyPolicy = template.ipFamilyPolicy;
  if (template.ipFamilies !== undefined) spec.ipFamilies = template.ipFamilies;
  return withRenderHash<V1Service>({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: grid.metadata.namespace,
      labels: gridLabels(grid, unit),
      annotations: { [ANNOTATION_TOPOLOGY_KEYS]: '[]' },
      ownerReferences: [controllerRef(grid)],
    },
    spec,
  });
}

/**
 * The shared Service and one per unit. Names, templates and errors are decided at once (a name
 * may depend on the whole unit set); each Service object is rendered when first read.
 */
export function renderServiceGrid(grid: ServiceGrid, units: readonly string[]): RenderedServiceGrid {
  const gridName = grid.metadata.name!;
  const mode = grid.spec.unitServices ?? 'Headless';
  const names = assignNames(units, (u) => unitServiceName(gridName, u));
  const rendered = [...units].sort().map((unit): RenderedUnitService => {
    const choice = chooseTemplate(grid, unit);
    if ('error' in choice)
      return { unit, name: '', template: choice.name, error: { reason: REASON_INVALID_TEMPLATE, message: choice.error } };
    if (mode === 'None') return { unit, name: '', template: choice.name };
    const assigned = names.get(unit)!;
    if ('error' in assigned)
      return { unit, name: '', template: choice.name, error: { reason: REASON_NAME_COLLISION, message: assigned.error } };
    const { name } = assigned;
    const invalid = (why: string) => ({
      unit,
      name,
      template: choice.name,
      error: { reason: REASON_INVALID_TEMPLATE, message: `template ${JSON.stringify(choice.name)} ${why}` },
    });
    if (!choice.template.selector || Object.keys(choice.template.selector).length === 0) {
      return invalid("has no selector, so a per-unit Service cannot select the unit's pods");
    }
    if (choice.template.type === 'ExternalName') return invalid('is an ExternalName Service; it has no per-unit form');
    const template = choice.template;
    // Rendered when first read (see once).
    const service = once(() => renderUnitService(grid, unit, name, template));
    return {
      unit,
      name,
      template: choice.name,
      get service() {
        return service();
      },
    };
  });
  const shared = once(() => renderSharedService(grid));
  return {
    sharedName: sharedServiceName(gridName),
    get shared() {
      return shared();
    },
    units: rendered,
  };
}
