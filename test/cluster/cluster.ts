// A real, throw-away Kubernetes control plane on loopback for tests and the demo: etcd and
// kube-apiserver (RBAC enforced, audit log of writes) always; kube-controller-manager,
// kube-scheduler and kwok (simulated nodes) on request; kube-proxy per simulated node in its own
// network namespace. Binaries are built from their Go modules by build-binaries.sh.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { ensureBinaries } from './binaries.ts';
import { type KubeProxy, type KubeProxyOptions, startKubeProxy } from './kube-proxy.ts';
import { createCA, createServiceAccountKeys, type KeyPair, signCert } from './pki.ts';
import { type Component, startComponent, waitFor } from './processes.ts';

export interface ClusterOptions {
  /** kube-controller-manager: Deployments, ReplicaSets, EndpointSlices, garbage collection, ... */
  controllerManager?: boolean;
  scheduler?: boolean;
  /**
   * kwok keeps nodes made by createNode Ready as a kubelet would (node Lease renewed, status
   * heartbeats) and runs their pods (Running/Ready with an IP).
   */
  kwok?: boolean;
  /** Extra kube-apiserver flags, e.g. ['--watch-cache-sizes=...']. */
  apiserverArgs?: string[];
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface WriteRequest {
  verb: string;
  user: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  code: number;
  /** When the apiserver received the request and when it completed the response (ms since the epoch). */
  receivedAt: number;
  completedAt: number;
}

export interface Cluster {
  server: string;
  adminKubeconfigPath: string;
  /** The admin's TLS material, for raw HTTPS clients (benchmarks). */
  adminTLS: { ca: string; cert: string; key: string };
  binDir: string;
  logDir: string;
  /** Folder of everything this cluster wrote; removed by stop() unless keepFiles() was called. */
  dir: string;
  kubeConfig(): k8s.KubeConfig;
  kubeconfigForUser(name: string, groups?: string[]): Promise<string>;
  /** `server` points the kubeconfig elsewhere, e.g. at a relay (test/cluster/relay.ts) in front of the apiserver. */
  kubeconfigForServiceAccount(namespace: string, name: string, options?: { server?: string }): Promise<string>;
  /** A kubeconfig with no credentials for a plain-HTTP server (e.g. a wrapper). */
  kubeconfigForURL(url: string, name?: string): Promise<string>;
  kubectl(args: string[], options?: { kubeconfig?: string; input?: string; timeoutMs?: number }): Promise<KubectlResult>;
  apply(objects: object[] | string): Promise<void>;
  createNode(name: string, labels?: Record<string, string>): Promise<void>;
  /** Sum of the apiserver's apiserver_request_total for write verbs, from its /metrics. */
  writeRequestCount(): Promise<number>;
  /** Write requests from the audit log, optionally of one user (e.g. 'system:serviceaccount:ns:sa'). */
  writeRequests(user?: string): Promise<WriteRequest[]>;
  startKubeProxy(options: Omit<KubeProxyOptions, 'binDir' | 'dir' | 'logDir' | 'apiserver'>): Promise<KubeProxy>;
  /** Stops and starts kube-apiserver on the same port and data (a real apiserver restart). */
  restartApiserver(): Promise<void>;
  /** GET a path on the apiserver as admin, returning the body. */
  rawGet(path: string): Promise<string>;
  /** Starts a program (e.g. a controller under test) that lives and dies with the cluster; logs in logDir. */
  startProcess(name: string, command: string, args: string[], env?: NodeJS.ProcessEnv, options?: { cwd?: string }): Component;
  /** Process ids of the running components, by name (for memory measurements). */
  pids(): Record<string, number>;
  keepFiles(): void;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function kubeconfigYaml(opts: { server: string; caPem?: string; user: string; client?: KeyPair; token?: string }): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const cluster: Record<string, string> = { server: opts.server };
  if (opts.caPem) cluster['certificate-authority-data'] = b64(opts.caPem);
  const user: Record<string, string> = {};
  if (opts.client) {
    user['client-certificate-data'] = b64(opts.client.certPem);
    user['client-key-data'] = b64(opts.client.keyPem);
  }
  if (opts.token) user.token = opts.token;
  return k8s.dumpYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster }],
    users: [{ name: opts.user, user }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: opts.user } }],
    'current-context': 'test',
  });
}

/** The kubelet's default node Lease duration; kwok renews each node's Lease every quarter of it. */
export const NODE_LEASE_SECONDS = 40;

const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  verbs: [get, list, watch]
- level: Metadata
`;

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const binDir = await ensureBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'servicegroup-cluster-'));
  const logDir = join(dir, 'logs');
  const pkiDir = join(dir, 'pki');
  await mkdir(logDir);
  await mkdir(pkiDir);
  const components: Component[] = [];
  let keep = false;
  let stopped = false;

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(proxies.map((p) => p.stop()));
    for (const c of [...components].reverse()) await c.stop();
    if (!keep) await rm(dir, { recursive: true, force: true });
    else console.error(`[cluster] kept component logs in ${logDir}`);
  };

  const proxies: KubeProxy[] = [];
  try {
    const [etcdPort, etcdPeerPort, apiPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const ca = await createCA(pkiDir);
    const [serving, admin, saKeys] = await Promise.all([
      signCert(pkiDir, ca, 'apiserver', {
        commonName: 'kube-apiserver',
        ipSANs: ['127.0.0.1', '10.96.0.1'],
        dnsSANs: ['localhost', 'kubernetes.default.svc'],
      }),
      signCert(pkiDir, ca, 'admin', { commonName: 'admin', organizations: ['system:masters'] }),
      createServiceAccountKeys(pkiDir),
    ]);
    const server = `https://127.0.0.1:${apiPort}`;
    const adminKubeconfigPath = join(dir, 'admin.kubeconfig');
    await writeFile(adminKubeconfigPath, kubeconfigYaml({ server, caPem: ca.certPem, user: 'admin', client: admin }), { mode: 0o600 });

    const etcd = startComponent(
      'etcd',
      join(binDir, 'etcd'),
      [
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      { logDir },
    );
    components.push(etcd);

    const auditPolicy = join(dir, 'audit-policy.yaml');
    await writeFile(auditPolicy, AUDIT_POLICY);
    const auditLog = join(logDir, 'audit.log');
    const apiserverArgs = [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--bind-address=127.0.0.1`,
      `--advertise-address=127.0.0.1`,
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${serving.certFile}`,
      `--tls-private-key-file=${serving.keyFile}`,
      `--client-ca-file=${ca.certFile}`,
      `--service-account-issuer=https://kubernetes.default.svc`,
      `--service-account-key-file=${saKeys.publicKeyFile}`,
      `--service-account-signing-key-file=${saKeys.privateKeyFile}`,
      '--authorization-mode=RBAC',
      '--service-cluster-ip-range=10.96.0.0/16',
      '--allow-privileged=true',
      '--profiling=false',
      `--audit-policy-file=${auditPolicy}`,
      `--audit-log-path=${auditLog}`,
      '--audit-log-format=json',
      '--audit-log-mode=blocking',
      '--audit-log-maxsize=0',
      ...(options.apiserverArgs ?? []),
    ];

    const adminRequest = (path: string, timeoutMs = 5000) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpsRequest(
          { host: '127.0.0.1', port: apiPort, path, ca: ca.certPem, cert: admin.certPem, key: admin.keyPem, timeout: timeoutMs },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
        req.on('error', reject);
        req.end();
      });

    let apiserver: Component;
    const startApiserver = async () => {
      apiserver = startComponent('kube-apiserver', join(binDir, 'kube-apiserver'), apiserverArgs, { logDir });
      components.push(apiserver);
      await waitFor('kube-apiserver /readyz', async () => ((await adminRequest('/readyz')).status === 200 ? true : undefined), {
        timeoutMs: 90_000,
        components: [etcd, apiserver],
      });
    };
    await startApiserver();

    const kc = new k8s.KubeConfig();
    kc.loadFromFile(adminKubeconfigPath);

    const kubectl = async (
      args: string[],
      opts: { kubeconfig?: string; input?: string; timeoutMs?: number } = {},
    ): Promise<KubectlResult> =>
      new Promise((resolve) => {
        const child = execFile(
          join(binDir, 'kubectl'),
          [`--kubeconfig=${opts.kubeconfig ?? adminKubeconfigPath}`, ...args],
          { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
          (err, stdout, stderr) => {
            const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
            resolve({ stdout, stderr, code });
          },
        );
        if (opts.input !== undefined) child.stdin?.end(opts.input);
        else child.stdin?.end();
      });

    const apply = async (objects: object[] | string) => {
      const input = typeof objects === 'string' ? objects : objects.map((o) => k8s.dumpYaml(o)).join('---\n');
      const r = await kubectl(['apply', '--server-side', '--field-manager=test', '--force-conflicts', '-f', '-'], { input });
      if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
    };

    const kubeconfigForUser = async (name: string, groups: string[] = []) => {
      const safe = name.replace(/[^A-Za-z0-9_.-]/g, '_');
      const pair = await signCert(pkiDir, ca, `user-${safe}`, { commonName: name, organizations: groups });
      const path = join(dir, `user-${safe}.kubeconfig`);
      await writeFile(path, kubeconfigYaml({ server, caPem: ca.certPem, user: name, client: pair }), { mode: 0o600 });
      return path;
    };

    const kubeconfigForServiceAccount = async (namespace: string, name: string, options: { server?: string } = {}) => {
      await apply([
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } },
        { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } },
      ]);
      const r = await kubectl(['create', 'token', name, '-n', namespace, '--duration=24h']);
      if (r.code !== 0) throw new Error(`token for ${namespace}/${name}: ${r.stderr}`);
      const via = options.server ? `-${new URL(options.server).port}` : '';
      const path = join(dir, `sa-${namespace}-${name}${via}.kubeconfig`);
      const user = `system:serviceaccount:${namespace}:${name}`;
      await writeFile(path, kubeconfigYaml({ server: options.server ?? server, caPem: ca.certPem, user, token: r.stdout.trim() }), {
        mode: 0o600,
      });
      return path;
    };

    const kubeconfigForURL = async (url: string, name = 'url') => {
      const path = join(dir, `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}-${Date.now()}.kubeconfig`);
      await writeFile(path, kubeconfigYaml({ server: url, user: 'anonymous' }));
      return path;
    };

    if (options.controllerManager) {
      const port = await freePort();
      components.push(
        startComponent(
          'kube-controller-manager',
          join(binDir, 'kube-controller-manager'),
          [
            `--kubeconfig=${adminKubeconfigPath}`,
            `--authentication-kubeconfig=${adminKubeconfigPath}`,
            `--authorization-kubeconfig=${adminKubeconfigPath}`,
            '--leader-elect=false',
            '--bind-address=127.0.0.1',
            `--secure-port=${port}`,
            `--cert-dir=${join(dir, 'kcm-certs')}`,
            `--service-account-private-key-file=${saKeys.privateKeyFile}`,
            `--root-ca-file=${ca.certFile}`,
            '--controllers=*',
            '--concurrent-gc-syncs=5',
            '--profiling=false',
          ],
          { logDir },
        ),
      );
    }
    if (options.scheduler) {
      const port = await freePort();
      const config = join(dir, 'scheduler.yaml');
      await writeFile(
        config,
        k8s.dumpYaml({
          apiVersion: 'kubescheduler.config.k8s.io/v1',
          kind: 'KubeSchedulerConfiguration',
          clientConnection: { kubeconfig: adminKubeconfigPath },
          leaderElection: { leaderElect: false },
        }),
      );
      components.push(
        startComponent(
          'kube-scheduler',
          join(binDir, 'kube-scheduler'),
          [
            `--config=${config}`,
            `--authentication-kubeconfig=${adminKubeconfigPath}`,
            `--authorization-kubeconfig=${adminKubeconfigPath}`,
            '--bind-address=127.0.0.1',
            `--secure-port=${port}`,
            `--cert-dir=${join(dir, 'scheduler-certs')}`,
          ],
          { logDir },
        ),
      );
    }
    let kwok: Component | undefined;
    if (options.kwok) {
      const port = await freePort();
      kwok = startComponent(
        'kwok',
        join(binDir, 'kwok'),
        [
          `--kubeconfig=${adminKubeconfigPath}`,
          '--manage-all-nodes=false',
          '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
          `--server-address=127.0.0.1:${port}`,
          '--cidr=10.244.0.0/16',
          '--node-ip=10.240.0.1',
          // Renew a Lease in kube-node-lease for every managed node, as a kubelet does (40 s, renewed
          // every 10 s). Without it kwok only patches node status, about every ten minutes, and the node
          // lifecycle controller marks nodes NotReady (and their pods not ready) after its grace period.
          `--node-lease-duration-seconds=${NODE_LEASE_SECONDS}`,
        ],
        { logDir },
      );
      components.push(kwok);
    }

    // A controller that dies early makes every later wait fail with a confusing timeout; check now.
    await new Promise((r) => setTimeout(r, 200));
    for (const c of components) {
      if (!c.isRunning()) throw new Error(`${c.name} exited at start; log ${c.logFile}:\n${c.tail()}`);
    }

    const createNode = async (name: string, labels: Record<string, string> = {}) => {
      if (!kwok) throw new Error('createNode needs startCluster({ kwok: true })');
      await apply([
        {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: {
            name,
            annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
            labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', type: 'kwok', ...labels },
          },
          spec: {},
        },
      ]);
    };

    const rawGet = async (path: string) => {
      const r = await adminRequest(path, 30_000);
      if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body.slice(0, 300)}`);
      return r.body;
    };

    const writeVerbs = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'DELETECOLLECTION', 'CREATE', 'UPDATE', 'APPLY']);
    const writeRequestCount = async () => {
      const text = await rawGet('/metrics');
      let total = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith('apiserver_request_total{')) continue;
        const verb = /verb="([A-Z]+)"/.exec(line)?.[1];
        if (verb && writeVerbs.has(verb)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return total;
    };

    const writeRequests = async (user?: string): Promise<WriteRequest[]> => {
      let text = '';
      try {
        text = await readFile(auditLog, 'utf8');
      } catch {
        return [];
      }
      const out: WriteRequest[] = [];
      for (const line of text.split('\n')) {
        if (!line) continue;
        const e = JSON.parse(line);
        if (user && e.user?.username !== user) continue;
        out.push({
          verb: e.verb,
          user: e.user?.username,
          resource: e.objectRef?.resource,
          subresource: e.objectRef?.subresource,
          namespace: e.objectRef?.namespace,
          name: e.objectRef?.name,
          code: e.responseStatus?.code,
          receivedAt: Date.parse(e.requestReceivedTimestamp),
          completedAt: Date.parse(e.stageTimestamp),
        });
      }
      return out;
    };

    return {
      server,
      adminKubeconfigPath,
      adminTLS: { ca: ca.certPem, cert: admin.certPem, key: admin.keyPem },
      binDir,
      logDir,
      dir,
      kubeConfig: () => {
        const copy = new k8s.KubeConfig();
        copy.loadFromFile(adminKubeconfigPath);
        return copy;
      },
      kubeconfigForUser,
      kubeconfigForServiceAccount,
      kubeconfigForURL,
      kubectl,
      apply,
      createNode,
      writeRequestCount,
      writeRequests,
      rawGet,
      async startKubeProxy(opts) {
        const proxyKubeconfig = await kubeconfigForUser('system:kube-proxy');
        const p = await startKubeProxy({
          ...opts,
          binDir,
          dir,
          logDir,
          apiserver: { port: apiPort, kubeconfig: proxyKubeconfig },
        });
        proxies.push(p);
        return p;
      },
      async restartApiserver() {
        await apiserver.stop();
        components.splice(components.indexOf(apiserver), 1);
        await startApiserver();
      },
      keepFiles: () => {
        keep = true;
      },
      startProcess: (name, command, args, env, options) => {
        const c = startComponent(name, command, args, { logDir, env: env ? { ...process.env, ...env } : undefined, cwd: options?.cwd });
        components.push(c);
        return c;
      },
      pids: () => Object.fromEntries(components.filter((c) => c.isRunning() && c.child.pid).map((c) => [c.name, c.child.pid as number])),
      stop,
    };
  } catch (err) {
    keep = true;
    await stop();
    throw err;
  }
}

/**
 * For node:test files: starts a cluster before the file's tests, stops it after, and keeps (and
 * prints the path of) the component logs when a test failed. Call at the top level of the file.
 */
export function useCluster(options: ClusterOptions = {}): () => Cluster {
  let cluster: Cluster | undefined;
  before(
    async () => {
      cluster = await startCluster(options);
    },
    { timeout: 60 * 60_000 },
  );
  afterEach((t) => {
    if (!(t as { passed?: boolean }).passed) cluster?.keepFiles();
  });
  after(async () => {
    await cluster?.stop();
  });
  return () => {
    if (!cluster) throw new Error('the cluster is not started (use it inside a test)');
    return cluster;
  };
}
