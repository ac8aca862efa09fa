// Shared setup of the controller integration tests: CRDs from crds/, the RBAC of
// examples/install/controller.yaml (loaded, not copied), and a kubeconfig for its ServiceAccount.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import { GridController } from '../controllers/reconcile/controller.ts';
import { CRD_FILES } from '../crds/generate.ts';
import { isStatus, KubeClient, type StreamOptions } from '../kube/client.ts';
import { type Credentials, loadKubeconfig } from '../kube/kubeconfig.ts';
import type { Cluster } from './cluster/cluster.ts';
import { waitFor } from './cluster/processes.ts';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CONTROLLER_USER = 'system:serviceaccount:servicegroup-system:servicegroup-controller';

export async function installCrds(cluster: Cluster): Promise<void> {
  // As text: client-node's typed YAML round trip would drop the schemas' x-kubernetes-* fields.
  const texts: string[] = [];
  for (const f of CRD_FILES) texts.push(await readFile(join(root, 'crds', f), 'utf8'));
  await cluster.apply(texts.join('\n---\n'));
  const admin = new KubeClient(loadKubeconfig(cluster.adminKubeconfigPath));
  for (const name of [
    'deploymentgrids.servicegroup.io',
    'servicegrids.servicegroup.io',
    'statefulsetgrids.servicegroup.io',
    'nodeunits.servicegroup.io',
  ]) {
    await until(`CRD ${name} established`, async () => {
      const crd = await admin.get<Obj>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      return (crd.status?.conditions ?? []).some((c: { type: string; status: string }) => c.type === 'Established' && c.status === 'True');
    });
  }
}

/** Applies everything in the install manifest except the controller's own Deployment. */
export async function installRbac(cluster: Cluster): Promise<string> {
  await cluster.apply(await readFile(join(root, 'examples', 'install', 'namespace.yaml'), 'utf8'));
  const docs = k8s.loadAllYaml(await readFile(join(root, 'examples', 'install', 'controller.yaml'), 'utf8')) as { kind: string }[];
  await cluster.apply(docs.filter((d) => d && d.kind !== 'Deployment'));
  return cluster.kubeconfigForServiceAccount('servicegroup-system', 'servicegroup-controller');
}

/**
 * A client with a fault to inject: its watches of one resource (by plural name) can be made to
 * deliver their events late (in order), as a slow or congested watch connection does, while
 * requests answer at once. Everything still comes from the real apiserver.
 */
export class LaggingWatch extends KubeClient {
  private lagMs = 0;
  private readonly resource: string;

  constructor(config: Credentials, resource: string) {
    super(config);
    this.resource = resource;
  }

  /** Runs `fn` with the watch `lagMs` late, then delivers on time again (the late events still come). */
  async lagging<T>(lagMs: number, fn: () => Promise<T>): Promise<T> {
    this.lagMs = lagMs;
    try {
      return await fn();
    } finally {
      this.lagMs = 0;
    }
  }

  override async stream(method: string, path: string, opts: StreamOptions): Promise<IncomingMessage> {
    const res = await super.stream(method, path, opts);
    if (!opts.query?.watch || !path.endsWith(`/${this.resource}`)) return res;
    const out = new PassThrough();
    let last = 0;
    // Each chunk goes out lagMs after it came, never before the one before it.
    const later = (f: () => void) => {
      last = Math.max(performance.now() + this.lagMs, last);
      setTimeout(f, last - performance.now());
    };
    res.on('data', (c: Buffer) => later(() => out.write(c)));
    res.on('end', () => later(() => out.end()));
    res.on('error', (err) => out.destroy(err));
    out.on('close', () => res.destroy());
    return out as unknown as IncomingMessage;
  }
}

export function clientFor(kubeconfigPath: string): KubeClient {
  return new KubeClient(loadKubeconfig(kubeconfigPath));
}

/**
 * The in-process setup of the controller tests: CRDs and the install manifest's RBAC, a namespace,
 * simulated nodes with their labels, and a GridController running as the controller's
 * ServiceAccount with no resync (only watches drive it). Returns an admin client beside it.
 */
export async function startGridController(
  cluster: Cluster,
  namespace: string,
  nodes: Record<string, Record<string, string>>,
  /** The controller's client, made from its ServiceAccount's kubeconfig. */
  controllerClient: (kubeconfig: Credentials) => KubeClient = (c) => new KubeClient(c),
): Promise<{ admin: KubeClient; controller: GridController }> {
  await installCrds(cluster);
  const saKubeconfig = await installRbac(cluster);
  const admin = new KubeClient(loadKubeconfig(cluster.adminKubeconfigPath));
  await cluster.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } }]);
  for (const [name, labels] of Object.entries(nodes)) await cluster.createNode(name, labels);
  const controller = new GridController({
    client: controllerClient(loadKubeconfig(saKubeconfig)),
    log: pino({ level: process.env.LOG_LEVEL ?? 'warn' }),
    resyncPeriodMs: 0,
  });
  await controller.start();
  return { admin, controller };
}

/** The object at `path`, or undefined when the apiserver answers 404. */
export async function getIfExists(client: KubeClient, path: string): Promise<Obj | undefined> {
  try {
    return await client.get<Obj>(path);
  } catch (err) {
    if (isStatus(err, 404)) return undefined;
    throw err;
  }
}

/** A DeploymentGrid of one container, keyed on `zone` unless told otherwise: the grid most tests need. */
export function deploymentGrid(
  name: string,
  namespace: string,
  opts: { key?: string; replicas?: number; app?: string; container?: string; image?: string } = {},
) {
  const app = opts.app ?? name;
  return {
    apiVersion: 'servicegroup.io/v1alpha1',
    kind: 'DeploymentGrid',
    metadata: { name, namespace },
    spec: {
      gridUniqKey: opts.key ?? 'zone',
      template: {
        replicas: opts.replicas ?? 0,
        selector: { matchLabels: { app } },
        template: { metadata: { labels: { app } }, spec: { containers: [{ name: opts.container ?? 'c', image: opts.image ?? 'img:1' }] } },
      },
    },
  };
}

/**
 * Waits until the controller is idle and its write count (audit log) stays the same across two
 * looks two seconds apart: its writes have settled. Returns that count.
 */
export async function waitForQuietWrites(cluster: Cluster, controller: GridController, timeoutMs = 120_000): Promise<number> {
  let writes = -1;
  await until(
    'controller writes stable',
    async () => {
      await controller.waitIdle(120_000);
      await new Promise((r) => setTimeout(r, 2000));
      const now = (await cluster.writeRequests(CONTROLLER_USER)).length;
      const stable = now === writes && controller.queue.idle();
      writes = now;
      return stable;
    },
    timeoutMs,
  );
  return writes;
}

/** Polls `check` until it returns a value other than undefined/false; `explain` adds context to a timeout. */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
  explain?: () => Promise<string>,
): Promise<T> {
  try {
    return await poll(what, check, timeoutMs);
  } catch (err) {
    if (explain) (err as Error).message += `\n${await explain().catch((e) => String(e))}`;
    throw err;
  }
}

function poll<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  return waitFor(
    what,
    async () => {
      const v = await check();
      return v === false ? undefined : v;
    },
    { timeoutMs, intervalMs: 200 },
  );
}

export interface Obj {
  metadata: {
    name: string;
    namespace?: string;
    uid: string;
    resourceVersion: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: any[];
  };
  spec?: any;
  status?: any;
  [k: string]: any;
}
