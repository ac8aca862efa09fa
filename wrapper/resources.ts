// The resource kinds the wrapper serves, described once; everything else (upstream reflectors,
// served stores, HTTP routes, discovery, RBAC test) is generated from this table.

export interface ObjectMeta {
  name: string;
  namespace?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [k: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [k: string]: unknown;
}

export interface ResourceSpec {
  /** Plural resource name, as in URLs and RBAC. */
  resource: string;
  /** '' for the core group. */
  group: string;
  version: string;
  kind: string;
  namespaced: boolean;
  /** Field selectors accepted besides metadata.name and metadata.namespace. */
  extraFields: readonly string[];
  shortNames?: readonly string[];
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
/** networking.k8s.io/v1 ServiceCIDR: GA in 1.33, what kube-proxy 1.33+ lists and watches. */
export const SERVICE_CIDRS: ResourceSpec = {
  resource: 'servicecidrs',
  group: 'networking.k8s.io',
  version: 'v1',
  kind: 'ServiceCIDR',
  namespaced: false,
  extraFields: [],
};

export const SERVED_RESOURCES: readonly ResourceSpec[] = [SERVICES, ENDPOINT_SLICES, ENDPOINTS, NODES, SERVICE_CIDRS];

/** Read, never served: a Namespace's topology annotation applies to its Services. */
export const NAMESPACES: ResourceSpec = {
  resource: 'namespaces',
  group: '',
  version: 'v1',
  kind: 'Namespace',
  namespaced: false,
  extraFields: [],
  shortNames: ['ns'],
};

export const apiVersionOf = (s: ResourceSpec) => (s.group === '' ? s.version : `${s.group}/${s.version}`);

/** URL prefix of the group version: /api/v1 or /apis/<group>/<version>. */
export const groupVersionPath = (s: ResourceSpec) => (s.group === '' ? `/api/${s.version}` : `/apis/${s.group}/${s.version}`);

export const supportedFields = (s: ResourceSpec) => ['metadata.name', ...(s.namespaced ? ['metadata.namespace'] : []), ...s.extraFields];

export const objectKey = (o: { metadata: { name: string; namespace?: string } }) =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
