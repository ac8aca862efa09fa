// Credentials for the apiserver: a server URL, TLS material and a token or client certificate,
// from a kubeconfig file or from the in-cluster ServiceAccount. Written here rather than taken from
// client-node's KubeConfig because importing client-node costs about 85 MiB of RSS (it loads every
// generated API model), and the wrapper runs on every node.
import { existsSync, readFileSync } from 'node:fs';
import { Agent, type RequestOptions } from 'node:https';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { load as loadYaml } from 'js-yaml';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface Credentials {
  /** Base URL of the apiserver. */
  readonly server: string;
  /** Adds TLS material and an Authorization header; tokens are re-read each time, as they rotate. */
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
}

interface KubeconfigFile {
  'current-context'?: string;
  contexts?: { name: string; context?: { cluster?: string; user?: string } }[];
  clusters?: { name: string; cluster?: Record<string, unknown> }[];
  users?: { name: string; user?: Record<string, unknown> }[];
}

function pick<T extends { name: string }>(list: T[] | undefined, name: string | undefined, what: string, file: string): T {
  const found = list?.find((e) => e.name === name);
  if (!found) throw new Error(`kubeconfig ${file}: ${what} "${name ?? ''}" not found`);
  return found;
}

/** Loads the current context of a kubeconfig file. */
/**
 * Connections are kept alive between requests, but one idle for this long is closed: a burst of
 * writes (a grid of hundreds of units) opens a hundred connections (118 after the controller's
 * convergence benchmark), and each one kept costs both ends memory for its TLS state and buffers.
 */
const KEEP_ALIVE = { keepAlive: true, timeout: 30_000 } as const;

export function loadKubeconfig(file: string): Credentials {
  let doc: KubeconfigFile;
  try {
    doc = loadYaml(readFileSync(file, 'utf8')) as KubeconfigFile;
  } catch (err) {
    throw new Error(`kubeconfig ${file}: ${(err as Error).message}`);
  }
  if (!doc || typeof doc !== 'object') throw new Error(`kubeconfig ${file}: not a kubeconfig`);
  const ctx = pick(doc.contexts, doc['current-context'], 'context', file).context ?? {};
  const cluster = pick(doc.clusters, ctx.cluster, 'cluster', file).cluster ?? {};
  const user = ctx.user ? (pick(doc.users, ctx.user, 'user', file).user ?? {}) : {};
  const base = dirname(file);
  const fileOf = (p: unknown) => (typeof p === 'string' ? (isAbsolute(p) ? p : join(base, p)) : undefined);
  const material = (data: unknown, path: unknown): Buffer | undefined => {
    if (typeof data === 'string') return Buffer.from(data, 'base64');
    const p = fileOf(path);
    return p ? readFileSync(p) : undefined;
  };
  if (user.exec || user['auth-provider']) {
    throw new Error(
      `kubeconfig ${file}: user "${ctx.user}" uses exec/auth-provider credentials, which ServiceGroup does not run; use a ServiceAccount token or a client certificate`,
    );
  }
  const server = cluster.server;
  if (typeof server !== 'string' || !server) throw new Error(`kubeconfig ${file}: cluster "${ctx.cluster}" has no server`);
  const ca = material(cluster['certificate-authority-data'], cluster['certificate-authority']);
  const cert = material(user['client-certificate-data'], user['client-certificate']);
  const key = material(user['client-key-data'], user['client-key']);
  const tokenFile = fileOf(user.tokenFile);
  const token = typeof user.token === 'string' ? user.token : undefined;
  const basic = typeof user.username === 'string' ? `${user.username}:${String(user.password ?? '')}` : undefined;
  const insecure = cluster['insecure-skip-tls-verify'] === true;
  const servername = typeof cluster['tls-server-name'] === 'string' ? cluster['tls-server-name'] : undefined;
  // One agent for every upstream request (the event proxy uses it too): TLS material and kept-alive connections.
  const agent = new Agent({ ...KEEP_ALIVE, ca, cert, key, rejectUnauthorized: !insecure, servername });
  return {
    server,
    async applyToHTTPSOptions(opts) {
      if (ca) opts.ca = ca;
      if (cert) opts.cert = cert;
      if (key) opts.key = key;
      if (insecure) opts.rejectUnauthorized = false;
      if (servername) opts.servername = servername;
      if (server.startsWith('https:')) opts.agent = agent;
      const bearer = tokenFile ? readFileSync(tokenFile, 'utf8').trim() : token;
      const headers = (opts.headers ??= {}) as Record<string, string>;
      if (bearer) headers.Authorization = `Bearer ${bearer}`;
      else if (basic) headers.Authorization = `Basic ${Buffer.from(basic).toString('base64')}`;
    },
  };
}

/**
 * The Pod's ServiceAccount. The server comes from KUBERNETES_SERVICE_HOST/PORT, which the
 * wrapper's DaemonSet must set to the control-plane endpoint (not the `kubernetes` ClusterIP,
 * which kube-proxy, the wrapper's own client, programs).
 */
export function loadInCluster(env: NodeJS.ProcessEnv = process.env, dir = SA_DIR): Credentials {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error('not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set; pass --kubeconfig');
  const ca = readFileSync(join(dir, 'ca.crt'));
  const agent = new Agent({ ...KEEP_ALIVE, ca });
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    async applyToHTTPSOptions(opts) {
      opts.ca = ca;
      opts.agent = agent;
      const headers = (opts.headers ??= {}) as Record<string, string>;
      headers.Authorization = `Bearer ${readFileSync(join(dir, 'token'), 'utf8').trim()}`;
    },
  };
}

/**
 * Credentials as Kubernetes clients look for them: the given kubeconfig file, else the first file
 * named in $KUBECONFIG, else ~/.kube/config if it exists, else the in-cluster ServiceAccount.
 */
export function loadCredentials(file?: string, env: NodeJS.ProcessEnv = process.env): Credentials {
  if (file) return loadKubeconfig(file);
  const fromEnv = env.KUBECONFIG?.split(':').find(Boolean);
  if (fromEnv) return loadKubeconfig(fromEnv);
  const home = join(env.HOME ?? homedir(), '.kube', 'config');
  if (existsSync(home)) return loadKubeconfig(home);
  return loadInCluster(env);
}
