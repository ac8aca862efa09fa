// What every part of the project knows about Kubernetes objects and their REST paths, whatever
// the kind: objects stay plain JSON exactly as the apiserver sends them.

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [k: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  // biome-ignore lint/suspicious/noExplicitAny: the rest of an object depends on its kind; callers narrow it.
  [k: string]: any;
}

/** A resource as URLs and RBAC name it. */
export interface GroupVersionResource {
  /** '' for the core group. */
  group: string;
  version: string;
  /** Plural resource name, e.g. `deployments`. */
  resource: string;
}

/** `namespace/name`, or `name` for cluster-scoped objects. */
export const objectKey = (o: { metadata: { name: string; namespace?: string } }): string =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;

export const apiVersionOf = (r: { group: string; version: string }): string => (r.group === '' ? r.version : `${r.group}/${r.version}`);

/** URL prefix of the group version: /api/v1 or /apis/<group>/<version>. */
export const groupVersionPath = (r: { group: string; version: string }): string =>
  r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;

/** REST path of a collection (all namespaces when `namespace` is absent), an object, or its subresource. */
export function resourcePath(r: GroupVersionResource, namespace?: string, name?: string, subresource?: string): string {
  let p = `${groupVersionPath(r)}${namespace ? `/namespaces/${encodeURIComponent(namespace)}` : ''}/${r.resource}`;
  if (name) p += `/${encodeURIComponent(name)}`;
  if (subresource) p += `/${subresource}`;
  return p;
}
