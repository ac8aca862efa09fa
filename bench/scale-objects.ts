// The objects of the wrapper benchmarks at scale: nodes spread over NodeUnits, topology-marked
// Services with one EndpointSlice each, whose endpoints are spread evenly over the nodes. Services
// carry both topology annotations (this project's and SuperEdge's `topologyKeys`).
import { type Endpoint, inParallel, requestOk, TOPOLOGY_ANNOTATIONS } from './lib.ts';

export interface ScaleParams {
  nodes: number;
  units: number;
  services: number;
  /** Endpoints per Service. */
  eps: number;
}

export const SCALE_NS = 'scale';
export const nodeName = (i: number) => `node-${i}`;
export const unitOf = (N: ScaleParams, i: number) => `unit-${i % N.units}`;
/** The node of endpoint k of Service s: every node carries about the same number. */
export const nodeOfEndpoint = (N: ScaleParams, s: number, k: number) => (s * N.eps + k) % N.nodes;

/** Service s's slice; `version` shifts its endpoint IPs (an update). */
export function scaleSlice(N: ScaleParams, s: number, version = 0) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `svc-${s}-1`,
      namespace: SCALE_NS,
      labels: { 'kubernetes.io/service-name': `svc-${s}`, 'endpointslice.kubernetes.io/managed-by': 'bench' },
    },
    addressType: 'IPv4',
    ports: [{ port: 80, protocol: 'TCP' }],
    endpoints: Array.from({ length: N.eps }, (_, k) => {
      const ip = s * N.eps + k + version;
      return {
        addresses: [`10.${(ip >> 16) & 255}.${(ip >> 8) & 255}.${ip & 255}`],
        nodeName: nodeName(nodeOfEndpoint(N, s, k)),
        conditions: { ready: true },
      };
    }),
  };
}

/** Creates the namespace, nodes, Services and slices through the apiserver; returns the seconds it took. */
export async function populateScale(api: Endpoint, N: ScaleParams): Promise<number> {
  const t = performance.now();
  await requestOk(api, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SCALE_NS } });
  await inParallel(N.nodes, 16, (i) =>
    requestOk(api, 'POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: nodeName(i), labels: { zone: unitOf(N, i) } },
    }).then(() => {}),
  );
  await inParallel(N.services, 32, async (s) => {
    await requestOk(api, 'POST', `/api/v1/namespaces/${SCALE_NS}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${s}`, annotations: TOPOLOGY_ANNOTATIONS },
      spec: { clusterIP: 'None', ports: [{ port: 80 }] },
    });
    await requestOk(api, 'POST', `/apis/discovery.k8s.io/v1/namespaces/${SCALE_NS}/endpointslices`, scaleSlice(N, s));
  });
  return (performance.now() - t) / 1000;
}
