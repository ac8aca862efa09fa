// The public contract of ServiceGroup (see shared PRODUCT.md "Fixed names"): API group, labels and
// annotations. The controllers and the wrapper both import these, so a name lives in one place.

import type { V1Condition, V1DeploymentSpec, V1ObjectMeta, V1ServiceSpec, V1StatefulSetSpec } from '@kubernetes/client-node';

export const GROUP = 'servicegroup.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Label on every rendered object: the grid's name. */
export const LABEL_GRID = 'servicegroup.io/grid';
/** Label on every rendered object and pod template: the raw NodeUnit value. */
export const LABEL_UNIT = 'servicegroup.io/unit';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'servicegroup-controller';

/** Service annotation: JSON array of node label keys, e.g. ["zone"], optionally ending in "*". */
export const ANNOTATION_TOPOLOGY_KEYS = 'servicegroup.io/topology-keys';
/** SuperEdge's spelling of the same annotation, honoured so its users can switch unchanged. */
export const ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE = 'topologyKeys';

// ---------------------------------------------------------------------------------------------
// Custom resource types. The embedded DeploymentSpec/ServiceSpec are the Kubernetes core types;
// the CRD schemas in crds/ are generated from the apiserver's OpenAPI so both agree.

export const KIND_DEPLOYMENT_GRID = 'DeploymentGrid';
export const KIND_SERVICE_GRID = 'ServiceGrid';
export const KIND_STATEFULSET_GRID = 'StatefulSetGrid';

/** The name `templates`/`defaultTemplateName` use for the grid's own `template`. */
export const DEFAULT_TEMPLATE_NAME = 'default';

/** One RFC 6902 operation, applied to a unit's DeploymentSpec (paths like `/replicas`, `/template/spec/...`). */
export interface JsonPatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: unknown;
}

/** Per-unit adjustments, applied in list order to every unit named in `units`. */
export interface DeploymentGridOverride {
  units: string[];
  replicas?: number;
  patch?: JsonPatchOperation[];
}

interface GridSpecCommon<T> {
  /** Node label key whose distinct values are the NodeUnits. */
  gridUniqKey: string;
  template: T;
  /** Named alternative templates (e.g. a canary). */
  templatePool?: Record<string, T>;
  /** Unit value → templatePool entry name. */
  templates?: Record<string, string>;
  /** Template for units not in `templates`: empty or `default` means `template`. */
  defaultTemplateName?: string;
}

export interface DeploymentGridSpec extends GridSpecCommon<V1DeploymentSpec> {
  overrides?: DeploymentGridOverride[];
}

/**
 * DeploymentGrid's feature set for StatefulSets (SuperEdge's StatefulSetGrid field names). The
 * template's `serviceName` names the headless Service that publishes the pods' DNS names, normally
 * a ServiceGrid's shared Service `<servicegrid>-svc` (see examples/edge-dns).
 */
export interface StatefulSetGridSpec extends GridSpecCommon<V1StatefulSetSpec> {
  overrides?: DeploymentGridOverride[];
}

export type UnitServicesMode = 'Headless' | 'ClusterIP' | 'None';

export interface ServiceGridSpec extends GridSpecCommon<V1ServiceSpec> {
  /** Node label keys tried in order when a node's own unit has no ready endpoint; `*` means any. */
  topologyFallback?: string[];
  /** Kind of per-unit Service; Headless by default. */
  unitServices?: UnitServicesMode;
}

export interface DeploymentGridUnitStatus {
  /** Raw unit value. */
  name: string;
  deployment: string;
  replicas: number;
  readyReplicas: number;
  updatedReplicas: number;
  template: string;
  /** Set when the unit could not be rendered or applied. */
  error?: string;
}

export interface StatefulSetGridUnitStatus {
  /** Raw unit value. */
  name: string;
  statefulSet: string;
  replicas: number;
  readyReplicas: number;
  updatedReplicas: number;
  template: string;
  error?: string;
}

export interface ServiceGridUnitStatus {
  name: string;
  /** Per-unit Service name; empty when `unitServices: None`. */
  service: string;
  readyEndpoints: number;
  template: string;
  error?: string;
}

export interface GridStatus<U> {
  observedGeneration?: number;
  /** Name of the shared Service (ServiceGrid only). */
  service?: string;
  totalUnits?: number;
  readyUnits?: number;
  units?: U[];
  conditions?: V1Condition[];
}

export type DeploymentGridStatus = GridStatus<DeploymentGridUnitStatus>;
export type ServiceGridStatus = GridStatus<ServiceGridUnitStatus>;
export type StatefulSetGridStatus = GridStatus<StatefulSetGridUnitStatus>;

export interface DeploymentGrid {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND_DEPLOYMENT_GRID;
  metadata: V1ObjectMeta;
  spec: DeploymentGridSpec;
  status?: DeploymentGridStatus;
}

export interface ServiceGrid {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND_SERVICE_GRID;
  metadata: V1ObjectMeta;
  spec: ServiceGridSpec;
  status?: ServiceGridStatus;
}

export interface StatefulSetGrid {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND_STATEFULSET_GRID;
  metadata: V1ObjectMeta;
  spec: StatefulSetGridSpec;
  status?: StatefulSetGridStatus;
}

export const CONDITION_READY = 'Ready';
export const CONDITION_PROGRESSING = 'Progressing';
export const CONDITION_DEGRADED = 'Degraded';
export const REASON_CONFLICT = 'Conflict';
export const REASON_INVALID_OVERRIDE = 'InvalidOverride';
export const REASON_INVALID_TEMPLATE = 'InvalidTemplate';
export const REASON_NAME_COLLISION = 'NameCollision';
export const REASON_APPLY_FAILED = 'ApplyFailed';

/** Annotation on rendered objects: hash of what the controller last applied, to skip no-op writes. */
export const ANNOTATION_RENDER_HASH = 'servicegroup.io/render-hash';

// ---------------------------------------------------------------------------------------------
// NodeUnit: one (node label key, value) as an API object. Cluster-scoped.

export const KIND_NODE_UNIT = 'NodeUnit';
export const PLURAL_NODE_UNIT = 'nodeunits';

/** A Kubernetes label selector (metav1.LabelSelector). */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

export interface NodeUnitSpec {
  /** Node label key, e.g. `zone` or `topology.example.io/site`. Immutable. */
  key: string;
  /** Label value shared by the unit's nodes. Immutable. */
  value: string;
  /** Declared members by name: the controller labels them `key=value`. */
  nodes?: string[];
  /** Declared members by label: the controller labels matching nodes `key=value`. */
  nodeSelector?: LabelSelector;
}

export interface NodeUnitGridRef {
  kind: string;
  namespace: string;
  name: string;
}

export interface NodeUnitStatus {
  observedGeneration?: number;
  /** Names of the nodes labelled `key=value`, sorted. */
  nodes?: string[];
  nodeCount?: number;
  readyNodes?: number;
  notReadyNodes?: number;
  /** Grids keyed on `key`: each has a workload (or Service) in this unit. At most 50 are listed. */
  grids?: NodeUnitGridRef[];
  gridCount?: number;
  conditions?: V1Condition[];
}

export interface NodeUnit {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND_NODE_UNIT;
  metadata: V1ObjectMeta;
  spec: NodeUnitSpec;
  status?: NodeUnitStatus;
}

/** True while a declared NodeUnit claims a node that another NodeUnit of its key also claims, or cannot label a member. */
export const CONDITION_CONFLICT = 'Conflict';
/** Field manager of the node labels the controller sets for declared NodeUnits (server-side apply). */
export const NODE_LABEL_FIELD_MANAGER = 'servicegroup-nodeunit';
