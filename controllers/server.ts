// The controller's HTTP endpoints: Prometheus metrics on --metrics-bind-address, liveness and
// readiness on --health-probe-bind-address (one server when both name the same address).

import Fastify, { type FastifyInstance } from 'fastify';
import { formatListenAddress, type ListenAddress } from '../kube/flags.ts';

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

/** Starts the servers; resolves to a function that closes them. */
export async function startServers(at: Endpoints, metrics: MetricsSource, health: HealthSource): Promise<() => Promise<void>> {
  const servers = new Map<string, { app: FastifyInstance; address: ListenAddress }>();
  const server = (address: ListenAddress) => {
    const key = formatListenAddress(address);
    let s = servers.get(key);
    if (!s) servers.set(key, (s = { app: Fastify({ logger: false }), address }));
    return s.app;
  };
  if (at.metrics) server(at.metrics).get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.render()));
  if (at.health) {
    const app = server(at.health);
    app.get('/healthz', async (_req, reply) => {
      const problems = health.problems();
      if (!problems.length) return reply.type('text/plain').send('ok');
      return reply
        .code(500)
        .type('text/plain')
        .send(`${problems.map((p) => `[-]${p}`).join('\n')}\nhealthz check failed\n`);
    });
    app.get('/readyz', async (_req, reply) =>
      health.ready() ? reply.type('text/plain').send('ok') : reply.code(503).type('text/plain').send('caches not synced\n'),
    );
  }
  // An empty host means every interface, as `:8080` does for Go programs.
  for (const { app, address } of servers.values()) await app.listen({ host: address.host || '0.0.0.0', port: address.port });
  return async () => {
    await Promise.allSettled([...servers.values()].map((s) => s.app.close()));
  };
}
