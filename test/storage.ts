// Storage for StatefulSet claims on the test cluster, which has no provisioner: a StorageClass
// that binds a claim only once its pod is scheduled, and one static local PersistentVolume per
// NodeUnit, reachable only from that unit's nodes. kube-controller-manager's volume binder and the
// scheduler then bind each unit's claim to its own unit's volume, as local disks at a site would.

export const UNIT_LOCAL_STORAGE_CLASS = 'unit-local';

/** The StorageClass; `isDefault` makes it the one claims without `storageClassName` get. */
export function unitLocalStorageClass(opts: { isDefault?: boolean } = {}) {
  return {
    apiVersion: 'storage.k8s.io/v1',
    kind: 'StorageClass',
    metadata: {
      name: UNIT_LOCAL_STORAGE_CLASS,
      ...(opts.isDefault ? { annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } } : {}),
    },
    provisioner: 'kubernetes.io/no-provisioner',
    volumeBindingMode: 'WaitForFirstConsumer',
  };
}

/** PersistentVolume `<prefix>-<unit>` of 1Gi on the nodes whose label `key` is `unit`. */
export function unitLocalVolume(key: string, unit: string, prefix = 'unit') {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: `${prefix}-${unit}` },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteOnce'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: UNIT_LOCAL_STORAGE_CLASS,
      local: { path: '/mnt/data' },
      nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [{ key, operator: 'In', values: [unit] }] }] } },
    },
  };
}
