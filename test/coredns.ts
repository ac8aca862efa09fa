// A real CoreDNS (built from its Go module by build-binaries.sh) per simulated node, whose
// `kubernetes` plugin reads from that node's wrapper as examples/edge-dns configures it, and a DNS
// client (Node's c-ares resolver) to query it.
import { Resolver } from 'node:dns/promises';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureCoreDNS } from './cluster/binaries.ts';
import { type Cluster, freePort } from './cluster/cluster.ts';
import { waitFor } from './cluster/processes.ts';

export const CLUSTER_DOMAIN = 'cluster.local';

export interface RunningCoreDNS {
  /** host:port to send queries to. */
  server: string;
  logFile: string;
  stop(): Promise<void>;
}

/**
 * The server block of examples/edge-dns/coredns.yaml with test addresses: answers the cluster
 * domain from the wrapper at `wrapperURL`. TTL 0 so that what a query returns is what CoreDNS
 * knows at that moment (no resolver cache in between).
 */
export function corefile(opts: { port: number; readyPort: number; wrapperURL: string }): string {
  return `${CLUSTER_DOMAIN}:${opts.port} {
    bind 127.0.0.1
    errors
    ready 127.0.0.1:${opts.readyPort}
    kubernetes ${CLUSTER_DOMAIN} {
        endpoint ${opts.wrapperURL}
        ttl 0
    }
}
`;
}

/** Starts CoreDNS for one node and waits until its kubernetes plugin has synced (`/ready` 200). */
export async function startCoreDNS(cluster: Cluster, opts: { nodeName: string; wrapperURL: string }): Promise<RunningCoreDNS> {
  const binary = await ensureCoreDNS();
  const [port, readyPort] = [await freePort(), await freePort()];
  const conf = join(cluster.dir, `Corefile-${opts.nodeName}`);
  await writeFile(conf, corefile({ port, readyPort, wrapperURL: opts.wrapperURL }));
  const component = cluster.startProcess(`coredns-${opts.nodeName}`, binary, ['-conf', conf]);
  await waitFor(
    `CoreDNS of ${opts.nodeName} ready`,
    async () => {
      const r = await fetch(`http://127.0.0.1:${readyPort}/ready`).catch(() => undefined);
      return r?.status === 200 ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200, components: [component] },
  );
  return { server: `127.0.0.1:${port}`, logFile: component.logFile, stop: () => component.stop(5_000) };
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
