// The controller's HTTP endpoints: Prometheus metrics, liveness and readiness.

import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from './metrics.ts';

export interface HealthSource {
  /** Liveness: the process's loops are running. */
  healthy(): boolean;
  /** Readiness: caches synced (a standby replica is ready too: it can take over). */
  ready(): boolean;
}

export async function startServer(listen: string, registry: Registry, health: HealthSource): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(registry.render()));
  app.get('/healthz', async (_req, reply) => (health.healthy() ? reply.send('ok') : reply.code(500).send('unhealthy')));
  app.get('/readyz', async (_req, reply) => (health.ready() ? reply.send('ok') : reply.code(503).send('not ready')));
  const i = listen.lastIndexOf(':');
  await app.listen({ host: listen.slice(0, i).replace(/^\[|\]$/g, '') || '0.0.0.0', port: Number(listen.slice(i + 1)) });
  return app;
}
