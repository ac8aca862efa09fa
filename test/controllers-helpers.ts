// Shared setup of the controller integration tests: CRDs from crds/, the RBAC of
// examples/install/controller.yaml (loaded, not copied), and a kubeconfig for its ServiceAccount.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { KubeClient } from '../controllers/kube/client.ts';
import type { Cluster } from './cluster/cluster.ts';
import { waitFor } from './cluster/processes.ts';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CONTROLLER_USER = 'system:serviceaccount:servicegroup-system:servicegroup-controller';

export async function installCrds(cluster: Cluster): Promise<void> {
  // As text: client-node's typed YAML round trip would drop the schemas' x-kubernetes-* fields.
  const texts: string[] = [];
  for (const f of ['servicegroup.io_deploymentgrids.yaml', 'servicegroup.io_servicegrids.yaml']) texts.push(await readFile(join(root, 'crds', f), 'utf8'));
  await cluster.apply(texts.join('\n---\n'));
  const r = await cluster.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/deploymentgrids.servicegroup.io', 'crd/servicegrids.servicegroup.io']);
  if (r.code !== 0) throw new Error(`CRDs not established: ${r.stderr}`);
}

/** Applies everything in the install manifest except the controller's own Deployment. */
export async function installRbac(cluster: Cluster): Promise<string> {
  const docs = k8s.loadAllYaml(await readFile(join(root, 'examples', 'install', 'controller.yaml'), 'utf8')) as { kind: string }[];
  await cluster.apply(docs.filter((d) => d && d.kind !== 'Deployment'));
  return cluster.kubeconfigForServiceAccount('servicegroup-system', 'servicegroup-controller');
}

export function clientFor(kubeconfigPath: string): KubeClient {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return new KubeClient(kc);
}

export async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  return waitFor(what, async () => {
    const v = await check();
    return v === false ? undefined : v;
  }, { timeoutMs, intervalMs: 200 });
}

export interface Obj {
  metadata: { name: string; namespace?: string; uid: string; resourceVersion: string; generation?: number; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: any[] };
  spec?: any;
  status?: any;
  [k: string]: any;
}
