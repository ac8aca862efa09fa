// Test helpers for the application-grid-wrapper integration tests: run the real wrapper program
// as a child process with the ServiceAccount and RBAC of examples/install/wrapper.yaml, and read
// its list/watch responses over plain HTTP.
import { readFile, writeFile } from 'node:fs/promises';
import { get as httpGet, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { type Cluster, freePort } from './cluster/cluster.ts';
import type { Component } from './cluster/processes.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const WRAPPER_MANIFEST = join(root, 'examples/install/wrapper.yaml');
export const WRAPPER_NAMESPACE = 'servicegroup-system';
export const WRAPPER_SA = 'application-grid-wrapper';

/** Applies the RBAC part of the install manifest, server-side dry-runs the rest; returns the SA kubeconfig. */
export async function installWrapperRbac(cluster: Cluster): Promise<string> {
  await cluster.apply(await readFile(join(root, 'examples/install/namespace.yaml'), 'utf8'));
  const docs = k8s.loadAllYaml(await readFile(WRAPPER_MANIFEST, 'utf8')) as { kind: string }[];
  const rbac = docs.filter((d) => ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(d.kind));
  await cluster.apply(rbac);
  const rest = docs.filter((d) => !rbac.includes(d));
  const dry = await cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: rest.map((d) => k8s.dumpYaml(d)).join('---\n') });
  if (dry.code !== 0) throw new Error(`install manifest rejected by the apiserver: ${dry.stderr}`);
  return cluster.kubeconfigForServiceAccount(WRAPPER_NAMESPACE, WRAPPER_SA);
}

/** A copy of a kubeconfig pointing at another server URL (same CA and credentials). */
export async function kubeconfigWithServer(path: string, server: string, dir: string): Promise<string> {
  const text = await readFile(path, 'utf8');
  const out = join(dir, `wrapper-upstream-${Date.now()}.kubeconfig`);
  await writeFile(out, text.replace(/server: .*/, `server: ${server}`), { mode: 0o600 });
  return out;
}

export interface RunningWrapper {
  url: string;
  port: number;
  logFile: string;
  stateDir: string;
  /** The process, e.g. to SIGKILL it. */
  component: Component;
  stop(): Promise<void>;
}

/**
 * Starts `node wrapper/main.ts` as a component of the cluster (killed with it, whatever happens
 * to the test) and waits until it reports ready.
 */
export async function startWrapper(
  cluster: Cluster,
  opts: {
    nodeName: string;
    kubeconfig: string;
    args?: string[];
    port?: number;
    stateDir?: string;
    /** 'ready' (default): /readyz answers 200; 'healthy': /healthz does (e.g. to see it refuse while unsynced). */
    until?: 'ready' | 'healthy';
  },
): Promise<RunningWrapper> {
  const port = opts.port ?? (await freePort());
  // A state directory of this start only unless one is given: a saved state of another test (or of
  // this machine's /var/lib) must never be served.
  const stateDir = opts.stateDir ?? join(cluster.dir, `wrapper-state-${opts.nodeName}-${port}-${Date.now()}`);
  const component = cluster.startProcess(`wrapper-${opts.nodeName}-${port}-${Date.now()}`, process.execPath, [
    join(root, 'wrapper/main.ts'),
    `--listen=127.0.0.1:${port}`,
    `--node-name=${opts.nodeName}`,
    `--kubeconfig=${opts.kubeconfig}`,
    '--log-level=debug',
    `--state-dir=${stateDir}`,
    ...(opts.args ?? []),
  ]);
  const url = `http://127.0.0.1:${port}`;
  const stop = () => component.stop(5_000);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!component.isRunning()) throw new Error(`wrapper exited; log ${component.logFile}:\n${component.tail(40)}`);
    const r = await httpText(`${url}/${opts.until === 'healthy' ? 'healthz' : 'readyz'}`).catch(() => undefined);
    if (r?.status === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`wrapper not ready in 60s; log ${component.logFile}:\n${component.tail(40)}`);
    }
    await sleep(100);
  }
  return { url, port, logFile: component.logFile, stateDir, component, stop };
}

/** Endpoint IPs kube-proxy programmed for a Service (its KUBE-SEP chains' source matches in iptables-save). */
export function kubeProxyEndpointIps(rules: string, namespace: string, svc: string): string[] {
  const re = new RegExp(`-A KUBE-SEP-\\S+ -s (\\d+\\.\\d+\\.\\d+\\.\\d+)/32 -m comment --comment "?${namespace}/${svc}"? `, 'g');
  return [...new Set([...rules.matchAll(re)].map((m) => m[1]!))].sort();
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function httpText(
  url: string,
  init: { method?: string; body?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string; headers: IncomingMessage['headers'] }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: init.method ?? 'GET', headers: init.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

export interface WatchEventLine {
  type: string;
  object: {
    kind?: string;
    metadata: { name: string; namespace?: string; resourceVersion: string; annotations?: Record<string, string> };
    [k: string]: unknown;
  } & {
    code?: number;
    reason?: string;
  };
}

/** A raw watch on the wrapper that records every line and when the stream ended. */
export class RawWatch {
  readonly events: WatchEventLine[] = [];
  ended = false;
  endedAt = 0;
  status = 0;
  private res: IncomingMessage | undefined;
  private waiters: (() => void)[] = [];
  readonly ready: Promise<void>;
  constructor(url: string) {
    this.ready = new Promise((resolve, reject) => {
      const req = httpGet(url, (res) => {
        this.res = res;
        this.status = res.statusCode!;
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          buf += c;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line.trim()) this.events.push(JSON.parse(line));
          }
          this.wake();
        });
        const end = () => {
          if (this.ended) return;
          this.ended = true;
          this.endedAt = Date.now();
          this.wake();
        };
        res.on('end', end);
        res.on('close', end);
        resolve();
      });
      req.on('error', reject);
    });
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  /** Waits until `pred` holds for the recorded events (or the stream ends). */
  async until(pred: (events: WatchEventLine[]) => boolean, timeoutMs = 15_000): Promise<WatchEventLine[]> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.events)) {
      if (Date.now() > deadline)
        throw new Error(
          `watch condition not met in ${timeoutMs}ms; got ${JSON.stringify(this.events.map((e) => `${e.type}:${e.object.metadata?.name}`))}`,
        );
      if (this.ended)
        throw new Error(
          `watch ended before the condition; got ${JSON.stringify(this.events.map((e) => `${e.type}:${e.object.metadata?.name}`))}`,
        );
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
    return this.events;
  }
  close() {
    this.res?.destroy();
  }
}

/** A TCP relay to the apiserver that a test can cut (all connections dropped, new ones refused) and restore. */
export class CuttableRelay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private cutOff = false;
  port = 0;
  private readonly targetPort: number;
  constructor(targetPort: number) {
    this.targetPort = targetPort;
  }
  async start(): Promise<string> {
    this.port = await freePort();
    this.server = createServer((inside) => {
      if (this.cutOff) {
        inside.destroy();
        return;
      }
      const outside = connect(this.targetPort, '127.0.0.1');
      for (const s of [inside, outside]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          inside.destroy();
          outside.destroy();
        });
      }
      inside.pipe(outside).pipe(inside);
    });
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', r));
    return `https://127.0.0.1:${this.port}`;
  }
  cut() {
    this.cutOff = true;
    for (const s of this.sockets) s.destroy();
  }
  restore() {
    this.cutOff = false;
  }
  close() {
    this.cut();
    this.server?.close();
  }
}
