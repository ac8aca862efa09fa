// The REST resources the controller reads and writes, the grid object shape the syncs work on,
// and who controls an object (its controller ownerReference).

import type { V1Condition } from '@kubernetes/client-node';
import type { GroupVersionResource, KubeObject } from '../../kube/objects.ts';
import { GROUP, VERSION } from '../api/v1alpha1.ts';

export type Resource = GroupVersionResource;

export const DEPLOYMENTS: Resource = { group: 'apps', version: 'v1', resource: 'deployments' };
export const STATEFULSETS: Resource = { group: 'apps', version: 'v1', resource: 'statefulsets' };
export const SERVICES: Resource = { group: '', version: 'v1', resource: 'services' };
export const ENDPOINT_SLICES: Resource = { group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices' };
export const NODES: Resource = { group: '', version: 'v1', resource: 'nodes' };
export const PODS: Resource = { group: '', version: 'v1', resource: 'pods' };
export const DEPLOYMENT_GRIDS: Resource = { group: GROUP, version: VERSION, resource: 'deploymentgrids' };
export const SERVICE_GRIDS: Resource = { group: GROUP, version: VERSION, resource: 'servicegrids' };
export const STATEFULSET_GRIDS: Resource = { group: GROUP, version: VERSION, resource: 'statefulsetgrids' };

export interface GridObject extends KubeObject {
  kind: string;
  metadata: { name: string; namespace: string; uid: string; generation?: number; [k: string]: any };
  status?: { conditions?: V1Condition[]; [k: string]: any };
}

export function controllerUid(obj: KubeObject): string | undefined {
  return (obj.metadata?.ownerReferences as { controller?: boolean; uid: string }[] | undefined)?.find((r) => r.controller)?.uid;
}

export function isControlledBy(obj: KubeObject, grid: GridObject): boolean {
  return controllerUid(obj) === grid.metadata.uid;
}

/** `<resource>/<namespace>/<name>`: one rendered object, whatever grid wants it. */
export function objectRef(resource: Resource, namespace: string, name: string): string {
  return `${resource.resource}/${namespace}/${name}`;
}
