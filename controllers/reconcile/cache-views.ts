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
