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
