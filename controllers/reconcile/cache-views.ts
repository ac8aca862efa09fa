// What the controller keeps of the objects it caches but does not render. A cache holds every
// object of its kind (label-filtered) for the life of the process, so anything kept that no sync
// reads is memory spent for nothing; Pods, many per unit, are the largest case.

import type { KubeObject } from '../../kube/objects.ts';

/**
 * The parts of a Pod that finding and evicting misplaced pods read: its identity and version
 * (eviction preconditions, change detection), labels (grid and unit), owner (the Deployment's
 * ReplicaSet), whether it is terminating, and the node it runs on. Its spec's containers and its
 * status, most of its size, are never read.
 */
export function podView(pod: KubeObject): KubeObject {
  const { name, namespace, uid, resourceVersion, labels, ownerReferences, deletionTimestamp } = pod.metadata;
  const nodeName = pod.spec?.nodeName as string | undefined;
  return {
    metadata: { name, namespace, uid, resourceVersion, labels, ownerReferences, ...(deletionTimestamp ? { deletionTimestamp } : {}) },
    spec: nodeName ? { nodeName } : {},
  };
}

/**
 * The parts of a Node both controllers read: labels (units; the grid controller reads nothing
 * else), annotations (the labels a declared NodeUnit set) and the Ready condition (NodeUnit
 * readiness). One watch of Nodes serves both controllers; of each Node's status (images,
 * addresses, capacity: most of its size) only the Ready condition is kept.
 */
export function slimNode(node: KubeObject): KubeObject {
  const { name, uid, resourceVersion, labels, annotations, deletionTimestamp } = node.metadata;
  const conditions = (node.status as { conditions?: { type: string }[] } | undefined)?.conditions;
  return {
    metadata: { name, uid, resourceVersion, labels, annotations, ...(deletionTimestamp ? { deletionTimestamp } : {}) },
    status: { conditions: conditions?.filter((c) => c.type === 'Ready') ?? [] },
  };
}

/** The named fields of `from` that are present. */
function pick<T extends Record<string, unknown>>(from: T | undefined, fields: readonly string[]): T {
  const out: Record<string, unknown> = {};
  for (const f of fields) if (from?.[f] !== undefined) out[f] = from[f];
  return out as T;
}

/**
 * The metadata of a rendered object the syncs read: identity and version (writes, echo detection),
 * generation (rollout state, remembered rejections), labels and annotations (grid and unit, the
 * render hash, and drift of the ones we set), owners (who controls it) and deletion. Dropped:
 * creationTimestamp, generateName, finalizers and the like, which nothing reads.
 */
const RENDERED_METADATA = [
  'name',
  'namespace',
  'uid',
  'resourceVersion',
  'generation',
  'labels',
  'annotations',
  'ownerReferences',
  'deletionTimestamp',
] as const;

type Status = Record<string, unknown> & { conditions?: { type: string; status?: string; reason?: string; message?: string }[] };

const DEPLOYMENT_STATUS = ['observedGeneration', 'replicas', 'updatedReplicas', 'readyReplicas', 'availableReplicas'] as const;

/**
 * The parts of a rendered Deployment the grid sync reads. The whole spec: drift detection
 * compares it with what was applied, and the selector check reads it. Of the status, the counts
 * that unit readiness and rollouts read, and the Progressing condition (a rollout's unit fails on
 * ProgressDeadlineExceeded); the other conditions and their timestamps are dropped.
 */
export function deploymentView(d: KubeObject): KubeObject {
  const status = d.status as Status | undefined;
  const progressing = status?.conditions?.find((c) => c.type === 'Progressing');
  const kept = pick(status, DEPLOYMENT_STATUS);
  if (progressing) {
    const { type, status: value, reason, message } = progressing;
    kept.conditions = [{ type, status: value, reason, message }];
  }
  return { metadata: pick(d.metadata, RENDERED_METADATA), spec: d.spec, status: kept };
}

const STATEFULSET_STATUS = [
  'observedGeneration',
  'replicas',
  'updatedReplicas',
  'readyReplicas',
  'currentRevision',
  'updateRevision',
] as const;

/** The parts of a rendered StatefulSet the grid sync reads: the whole spec (drift, immutable fields) and the status counts and revisions of unit readiness. */
export function statefulSetView(s: KubeObject): KubeObject {
  return { metadata: pick(s.metadata, RENDERED_METADATA), spec: s.spec, status: pick(s.status as Status | undefined, STATEFULSET_STATUS) };
}

/** The parts of a rendered Service the grid sync reads: the whole spec (drift; clusterIP for headless switches). Its status (load balancer ingress) is never read. */
export function serviceView(s: KubeObject): KubeObject {
  return { metadata: pick(s.metadata, RENDERED_METADATA), spec: s.spec };
}

/**
 * What ServiceGrid readiness reads of an EndpointSlice: its labels (its Service, its grid) and,
 * per endpoint, the node and whether it is ready. Addresses, ports, target references, zones and
 * hints, most of a slice, are dropped.
 */
export function endpointSliceView(slice: KubeObject): KubeObject {
  const { name, namespace, uid, resourceVersion, labels } = slice.metadata;
  const endpoints = (slice.endpoints ?? []) as { nodeName?: string; conditions?: { ready?: boolean } }[];
  return {
    metadata: { name, namespace, uid, resourceVersion, labels },
    endpoints: endpoints.map((e) => ({ nodeName: e.nodeName, conditions: { ready: e.conditions?.ready } })),
  };
}
