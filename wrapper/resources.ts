// The resource kinds the wrapper serves, described once; everything else (upstream reflectors,
// served stores, HTTP routes, discovery, RBAC test) is generated from this table.
import { GROUP, PLURAL_NODE_UNIT, VERSION } from '../controllers/api/v1alpha1.ts';
import type { GroupVersionResource } from '../kube/objects.ts';

export interface ResourceSpec extends GroupVersionResource {
  kind: string;
  namespaced: boolean;
  /** Field selectors accepted besides metadata.name and metadata.namespace. */
  extraFields: readonly string[];
  shortNames?: readonly string[];
  /** Not served by every Kubernetes version this program supports: absent, it is served empty. */
  mayBeAbsent?: boolean;
}

export const SERVICES: ResourceSpec = {
  resource: 'services',
  group: '',
  version: 'v1',
  kind: 'Service',
  namespaced: true,
  extraFields: ['spec.clusterIP', 'spec.type'],
  shortNames: ['svc'],
};
export const ENDPOINT_SLICES: ResourceSpec = {
  resource: 'endpointslices',
  group: 'discovery.k8s.io',
  version: 'v1',
  kind: 'EndpointSlice',
  namespaced: true,
  extraFields: ['addressType'],
};
export const ENDPOINTS: ResourceSpec = {
  resource: 'endpoints',
  group: '',
  version: 'v1',
  kind: 'Endpoints',
  namespaced: true,
  extraFields: [],
  shortNames: ['ep'],
};
export const NODES: ResourceSpec = {
  resource: 'nodes',
  group: '',
  version: 'v1',
  kind: 'Node',
  namespaced: false,
  extraFields: [],
  shortNames: ['no'],
};
/**
 * networking.k8s.io/v1 ServiceCIDR: GA in 1.33, what kube-proxy 1.33+ lists and watches. An
 * apiserver before 1.33 does not serve it (kube-proxy there does not ask for it either).
 */
export const SERVICE_CIDRS: ResourceSpec = {
  resource: 'servicecidrs',
  group: 'networking.k8s.io',
  version: 'v1',
  kind: 'ServiceCIDR',
  namespaced: false,
  extraFields: [],
  mayBeAbsent: true,
};

/**
 * Namespaces: CoreDNS's kubernetes plugin lists and watches them (and waits for that cache before
 * answering), so a per-node CoreDNS pointed at the wrapper needs them. Served unchanged.
 */
export const NAMESPACES: ResourceSpec = {
  resource: 'namespaces',
  group: '',
  version: 'v1',
  kind: 'Namespace',
  namespaced: false,
  extraFields: [],
  shortNames: ['ns'],
};

export const SERVED_RESOURCES: readonly ResourceSpec[] = [SERVICES, ENDPOINT_SLICES, ENDPOINTS, NODES, SERVICE_CIDRS, NAMESPACES];

/** Read, never served: with `--membership=nodeunits` the NodeUnits' member lists say who is in which unit. */
export const NODE_UNITS: GroupVersionResource = { group: GROUP, version: VERSION, resource: PLURAL_NODE_UNIT };

export const supportedFields = (s: ResourceSpec) => ['metadata.name', ...(s.namespaced ? ['metadata.namespace'] : []), ...s.extraFields];

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
