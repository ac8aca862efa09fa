// A real CoreDNS (built from its Go module by build-binaries.sh) per simulated node, configured
// by examples/edge-dns/Corefile so its `kubernetes` plugin reads from that node's wrapper, and a
// DNS client (Node's c-ares resolver) to query it.
import { Resolver } from 'node:dns/promises';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureCoreDNS } from './cluster/binaries.ts';
import { type Cluster, freePort } from './cluster/cluster.ts';
import { waitFor } from './cluster/processes.ts';

export const CLUSTER_DOMAIN = 'cluster.local';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface RunningCoreDNS {
  /** host:port to send queries to. */
  server: string;
  logFile: string;
  stop(): Promise<void>;
}

export const EDGE_DNS_COREFILE = join(root, 'examples/edge-dns/Corefile');

/**
 * The cluster-domain server block of examples/edge-dns/Corefile (loaded, not copied), moved to
 * test addresses. The example's other block forwards to the host's resolver, which a test must
 * not reach.
 */
export async function corefile(
  ports: { dns: number; health: number; ready: number; metrics: number },
  wrapperURL: string,
): Promise<string> {
  const text = await readFile(EDGE_DNS_COREFILE, 'utf8');
  const block = /^cluster\.local:53 [^\n]*\{\n[\s\S]*?\n\}\n/m.exec(text)?.[0];
  if (!block) throw new Error(`${EDGE_DNS_COREFILE}: no server block for cluster.local:53`);
  const moves: [string | RegExp, string][] = [
    [/:53\b/g, `:${ports.dns}`],
    ['169.254.20.10:8080', `127.0.0.1:${ports.health}`],
    ['169.254.20.10:8181', `127.0.0.1:${ports.ready}`],
    ['169.254.20.10', '127.0.0.1'],
    ['127.0.0.1:9153', `127.0.0.1:${ports.metrics}`],
    ['http://127.0.0.1:51006', wrapperURL],
  ];
  return moves.reduce((out, [from, to]) => {
    if (typeof from === 'string' ? !out.includes(from) : !from.test(out)) throw new Error(`${EDGE_DNS_COREFILE}: ${from} not found`);
    return typeof from === 'string' ? out.replaceAll(from, to) : out.replace(from, to);
  }, block);
}

/** Starts CoreDNS for one node and waits until its kubernetes plugin has synced (`/ready` 200). */
export async function startCoreDNS(cluster: Cluster, opts: { nodeName: string; wrapperURL: string }): Promise<RunningCoreDNS> {
  const binary = await ensureCoreDNS();
  const ports = { dns: await freePort(), health: await freePort(), ready: await freePort(), metrics: await freePort() };
  const conf = join(cluster.dir, `Corefile-${opts.nodeName}`);
  await writeFile(conf, await corefile(ports, opts.wrapperURL));
  const component = cluster.startProcess(`coredns-${opts.nodeName}`, binary, ['-conf', conf]);
  await waitFor(
    `CoreDNS of ${opts.nodeName} ready`,
    async () => {
      const r = await fetch(`http://127.0.0.1:${ports.ready}/ready`).catch(() => undefined);
      return r?.status === 200 ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200, components: [component] },
  );
  return { server: `127.0.0.1:${ports.dns}`, logFile: component.logFile, stop: () => component.stop(5_000) };
}

/**
 * The A records of `name` as `server` answers them, sorted; [] for NXDOMAIN or no A record. A new
 * resolver per query, so nothing is answered from a client-side cache.
 */
export async function resolveA(server: string, name: string): Promise<string[]> {
  const resolver = new Resolver({ timeout: 3_000, tries: 2 });
  resolver.setServers([server]);
  try {
    return (await resolver.resolve4(name)).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
    throw err;
  }
}
