// The controller's HTTP endpoints: Prometheus metrics on --metrics-bind-address, liveness and
// readiness on --health-probe-bind-address (one server when both name the same address).
// Three read-only routes on Node's own HTTP server: a web framework here cost 4.4 MiB of resident
// memory and 3.6 MiB of heap for nothing the routes need (README, "Benchmarks").

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { formatListenAddress, type ListenAddress } from '../kube/flags.ts';
import { closeServer, listenAt } from '../kube/http-server.ts';
import { http } from '../kube/node-http.ts';

export interface HealthSource {
  /** Liveness: why the process should be restarted; empty while its loops run. */
  problems(): string[];
  /** Readiness: caches synced (a standby replica is ready too: it can take over). */
  ready(): boolean;
}

export interface MetricsSource {
  contentType: string;
  render(): Promise<string>;
}

export interface Endpoints {
  metrics?: ListenAddress;
  health?: ListenAddress;
}

interface Answer {
  status: number;
  type: string;
  body: string;
}

type Route = () => Answer | Promise<Answer>;

const TEXT = 'text/plain; charset=utf-8';

function healthz(health: HealthSource): Answer {
  const problems = health.problems();
  if (!problems.length) return { status: 200, type: TEXT, body: 'ok' };
  return { status: 500, type: TEXT, body: `${problems.map((p) => `[-]${p}`).join('\n')}\nhealthz check failed\n` };
}

function readyz(health: HealthSource): Answer {
  return health.ready() ? { status: 200, type: TEXT, body: 'ok' } : { status: 503, type: TEXT, body: 'caches not synced\n' };
}

async function answer(routes: Map<string, Route>, req: IncomingMessage): Promise<Answer & { allow?: string }> {
  const path = (req.url ?? '/').split('?')[0]!;
  const route = routes.get(path);
  if (!route) return { status: 404, type: TEXT, body: `${path} not found\n` };
  if (req.method !== 'GET' && req.method !== 'HEAD')
    return { status: 405, type: TEXT, body: `${req.method} not allowed\n`, allow: 'GET, HEAD' };
  try {
    return await route();
  } catch (err) {
    return { status: 500, type: TEXT, body: `${(err as Error).message}\n` };
  }
}

function serve(routes: Map<string, Route>): Server {
  return http.createServer((req: IncomingMessage, res: ServerResponse) => {
    void answer(routes, req).then((a) => {
      const headers: Record<string, string | number> = { 'content-type': a.type, 'content-length': Buffer.byteLength(a.body) };
      if (a.allow) headers.allow = a.allow;
      res.writeHead(a.status, headers);
      res.end(req.method === 'HEAD' ? undefined : a.body);
    });
  });
}

/** Starts the servers; resolves to a function that closes them. */
export async function startServers(at: Endpoints, metrics: MetricsSource, health: HealthSource): Promise<() => Promise<void>> {
  const byAddress = new Map<string, { address: ListenAddress; routes: Map<string, Route> }>();
  const routesAt = (address: ListenAddress) => {
    const key = formatListenAddress(address);
    let s = byAddress.get(key);
    if (!s) byAddress.set(key, (s = { address, routes: new Map() }));
    return s.routes;
  };
  if (at.metrics)
    routesAt(at.metrics).set('/metrics', async () => ({ status: 200, type: metrics.contentType, body: await metrics.render() }));
  if (at.health) {
    const routes = routesAt(at.health);
    routes.set('/healthz', () => healthz(health));
    routes.set('/readyz', () => readyz(health));
  }
  const servers: Server[] = [];
  try {
    for (const { address, routes } of byAddress.values()) {
      const server = serve(routes);
      await listenAt(server, address);
      servers.push(server);
    }
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }
  return async () => {
    await Promise.all(servers.map(closeServer));
  };
}
