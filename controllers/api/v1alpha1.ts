// The public contract of ServiceGroup (see shared PRODUCT.md "Fixed names"): API group, labels and
// annotations. The controllers and the wrapper both import these, so a name lives in one place.

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
