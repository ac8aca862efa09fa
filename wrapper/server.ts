// The HTTP side: fastify with one plugin per route group (health, discovery, served resources,
// forwarded events). Shared state is decorated on the instance. Anything not routed is refused
// with 403: the wrapper holds its own credentials and must not lend them.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync, type FastifyReply, LogController } from 'fastify';
import httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import type { KubeClient } from '../kube/client.ts';
import { TEXT_CONTENT_TYPE } from '../kube/metrics-text.ts';
import { apiVersionOf, groupVersionPath } from '../kube/objects.ts';
import { chunksOf } from './chunks.ts';
import {
  checkEventBody,
  EVENT_API_PREFIXES,
  type EventMethod,
  EventRequestError,
  type EventWrite,
  parseEventPath,
  readBody,
} from './events.ts';
import type { WrapperMetrics } from './metrics.ts';
import { parseListWatchQuery, QueryError } from './query.ts';
import { type ResourceSpec, supportedFields } from './resources.ts';
import type { ServedResource } from './served.ts';
import { type IncludeObject, includeObjectOf, tableOfEncoded, tableVersionOf, tableWatchSink } from './table.ts';

/** What /readyz, /metrics and /version tell about serving while the apiserver cannot be reached. */
export interface AutonomyStatus {
  /** Some upstream list or watch is failing. */
  readonly offline: boolean;
  /** The saved state served since start, until every resource has been listed upstream. */
  readonly restored: { generation: number; writtenAt: string } | undefined;
  /** When the apiserver last answered (ms since the epoch). */
  readonly lastContact: number | undefined;
  /** The apiserver's GET /version answer, as last read. */
  readonly version: unknown;
  ageSeconds(): number;
}

export interface WrapperState {
  specs: readonly ResourceSpec[];
  served: Record<string, ServedResource>;
  ready(): boolean;
  upstream: KubeClient;
  metrics: WrapperMetrics;
  log: Logger;
  autonomy?: AutonomyStatus;
  bookmarkIntervalMs: number;
  /** Watches without timeoutSeconds end after a random time in [min, 2*min), like the apiserver. */
  minWatchTimeoutSeconds: number;
  /** Open watches (all resources) past which a new watch is answered 429. */
  maxWatches: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    wrapper: WrapperState;
  }
}

export function status(code: number, reason: string, message: string, details?: object) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code, ...(details ? { details } : {}) };
}

function sendStatus(reply: FastifyReply, code: number, reason: string, message: string, details?: object) {
  return reply
    .code(code)
    .type('application/json')
    .send(JSON.stringify(status(code, reason, message, details)));
}

/** How long a client refused for too many watches is asked to wait (what the apiserver's max-in-flight filter says). */
const WATCH_RETRY_AFTER_SECONDS = 1;
/** Refusals under a burst are logged once per this period, with their count, not one line each. */
const REFUSAL_LOG_PERIOD_MS = 10_000;

const healthRoutes: FastifyPluginAsync = async (app) => {
  const { metrics } = app.wrapper;
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok'));
  app.get('/readyz', async (_req, reply) => {
    if (!app.wrapper.ready()) return reply.code(503).type('text/plain').send('caches not synced');
    return reply.type('text/plain').send(readyDetail(app.wrapper.autonomy));
  });
  app.get('/metrics', async (_req, reply) => {
    for (const [resource, s] of Object.entries(app.wrapper.served)) {
      metrics.setGauge('servicegroup_wrapper_objects', 'Objects served.', { resource }, s.count);
    }
    metrics.sampleProcess();
    metrics.setGauge('servicegroup_wrapper_ready', 'Whether caches have synced.', {}, app.wrapper.ready() ? 1 : 0);
    const autonomy = app.wrapper.autonomy;
    if (autonomy) {
      metrics.setGauge('servicegroup_wrapper_offline', 'Whether an upstream list or watch is failing.', {}, autonomy.offline ? 1 : 0);
      metrics.setGauge(
        'servicegroup_wrapper_serving_saved_state',
        'Whether the state saved on disk is served (from start until every resource is listed upstream).',
        {},
        autonomy.restored ? 1 : 0,
      );
      metrics.setGauge(
        'servicegroup_wrapper_state_age_seconds',
        'Age of what is served: 0 while the apiserver answers.',
        {},
        autonomy.ageSeconds(),
      );
      metrics.setGauge(
        'servicegroup_wrapper_upstream_last_contact_timestamp_seconds',
        'When the apiserver last answered a list or watch (Unix time).',
        {},
        (autonomy.lastContact ?? 0) / 1000,
      );
    }
    return reply.type(TEXT_CONTENT_TYPE).send(metrics.render());
  });
};

function readyDetail(autonomy: AutonomyStatus | undefined): string {
  if (!autonomy?.offline) return autonomy?.restored ? `ok: serving the saved state of ${autonomy.restored.writtenAt}` : 'ok';
  const since = autonomy.lastContact ? new Date(autonomy.lastContact).toISOString() : 'start';
  const saved = autonomy.restored ? `the saved state of ${autonomy.restored.writtenAt}` : 'the last known state';
  return `ok: apiserver unreachable since ${since}; serving ${saved}`;
}

const COMMA = Buffer.from(',');
const LIST_END = Buffer.from(']}');

const EVENTS_CORE = { group: '', version: 'v1' };
const EVENTS_V1 = { group: 'events.k8s.io', version: 'v1' };

const discoveryRoutes: FastifyPluginAsync = async (app) => {
  const { specs } = app.wrapper;
  const resourceEntry = (spec: ResourceSpec) => ({
    name: spec.resource,
    singularName: spec.kind.toLowerCase(),
    namespaced: spec.namespaced,
    kind: spec.kind,
    verbs: ['get', 'list', 'watch'],
    ...(spec.shortNames ? { shortNames: spec.shortNames } : {}),
  });
  const eventsEntry = {
    name: 'events',
    singularName: 'event',
    namespaced: true,
    kind: 'Event',
    verbs: ['create', 'patch'],
    shortNames: ['ev'],
  };
  const groupVersions = new Map<string, { group: string; version: string; resources: object[] }>();
  for (const gv of [EVENTS_CORE, EVENTS_V1]) groupVersions.set(`${gv.group}/${gv.version}`, { ...gv, resources: [eventsEntry] });
  for (const spec of specs) {
    const k = `${spec.group}/${spec.version}`;
    if (!groupVersions.has(k)) groupVersions.set(k, { group: spec.group, version: spec.version, resources: [] });
    groupVersions.get(k)!.resources.unshift(resourceEntry(spec));
  }
  const json = (reply: FastifyReply, body: object) => reply.type('application/json').send(JSON.stringify(body));
  // The apiserver's own answer, as last read (and saved), so clients get it while it is unreachable.
  app.get('/version', async (_req, reply) => {
    const version = app.wrapper.autonomy?.version;
    if (version === undefined) return sendStatus(reply, 503, 'ServiceUnavailable', 'the apiserver version is not known yet');
    return json(reply, version as object);
  });
  app.get('/api', async (_req, reply) => json(reply, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] }));
  app.get('/apis', async (_req, reply) =>
    json(reply, {
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: [...groupVersions.values()]
        .filter((gv) => gv.group !== '')
        .map((gv) => {
          const v = { groupVersion: `${gv.group}/${gv.version}`, version: gv.version };
          return { name: gv.group, versions: [v], preferredVersion: v };
        }),
    }),
  );
  for (const gv of groupVersions.values()) {
    const groupVersion = gv.group === '' ? gv.version : `${gv.group}/${gv.version}`;
    const path = gv.group === '' ? `/api/${gv.version}` : `/apis/${gv.group}/${gv.version}`;
    app.get(path, async (_req, reply) => json(reply, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources: gv.resources }));
    if (gv.group !== '') {
      app.get(`/apis/${gv.group}`, async (_req, reply) => {
        const v = { groupVersion, version: gv.version };
        return json(reply, { kind: 'APIGroup', apiVersion: 'v1', name: gv.group, versions: [v], preferredVersion: v });
      });
    }
  }
};

const resourceRoutes: FastifyPluginAsync = async (app) => {
  const state = app.wrapper;
  const { log } = state;
  const openWatches = new Set<() => void>();
  let refusedSinceLog = 0;
  let lastRefusalLog = 0;
  const refuseWatch = (reply: FastifyReply, resource: string) => {
    state.metrics.requestRefused('too_many_watches');
    refusedSinceLog++;
    const now = Date.now();
    if (now - lastRefusalLog >= REFUSAL_LOG_PERIOD_MS) {
      log.warn(
        { resource, openWatches: openWatches.size, maxWatches: state.maxWatches, refused: refusedSinceLog },
        'refusing watches: the limit of open watches is reached (raise --max-watches if this node has that many clients)',
      );
      lastRefusalLog = now;
      refusedSinceLog = 0;
    }
    reply.header('Retry-After', String(WATCH_RETRY_AFTER_SECONDS));
    return sendStatus(
      reply,
      429,
      'TooManyRequests',
      `too many open watches (${openWatches.size} of at most ${state.maxWatches}); retry after ${WATCH_RETRY_AFTER_SECONDS}s`,
      { retryAfterSeconds: WATCH_RETRY_AFTER_SECONDS },
    );
  };
  const bookmarkTimer = setInterval(() => {
    for (const s of Object.values(state.served)) s.bookmark();
  }, state.bookmarkIntervalMs);
  // Before the server waits for open connections: watches would otherwise hold it open.
  app.addHook('preClose', async () => {
    clearInterval(bookmarkTimer);
    for (const close of [...openWatches]) close();
  });

  for (const spec of state.specs) {
    const served = state.served[spec.resource]!;
    const base = groupVersionPath(spec);
    const fields = supportedFields(spec);
    const listKind = `${spec.kind}List`;
    const apiVersion = apiVersionOf(spec);

    const refuse = (reply: FastifyReply, err: unknown) => {
      if (err instanceof QueryError) {
        state.metrics.requestRefused('bad_request');
        return sendStatus(reply, 400, 'BadRequest', err.message);
      }
      throw err;
    };

    const collection = async (req: { url: string; params: unknown; raw: IncomingMessage }, reply: FastifyReply, forceWatch: boolean) => {
      if (!state.ready()) return sendStatus(reply, 503, 'ServiceUnavailable', 'the application-grid-wrapper has not synced its caches yet');
      const namespace = (req.params as { namespace?: string }).namespace;
      const params = new URL(req.url, 'http://x').searchParams;
      let q: ReturnType<typeof parseListWatchQuery>;
      try {
        q = parseListWatchQuery(params, fields);
      } catch (err) {
        return refuse(reply, err);
      }
      // `kubectl get` asks for the Table form; everything else gets the objects.
      const tableVersion = tableVersionOf(req.raw.headers.accept);
      let includeObject: IncludeObject = 'Metadata';
      try {
        if (tableVersion) includeObject = includeObjectOf(params);
      } catch (err) {
        return refuse(reply, err);
      }
      const selector = q.match;
      const match =
        namespace === undefined
          ? selector
          : (o: { metadata: { namespace?: string; labels?: Record<string, string> } }) =>
              o.metadata.namespace === namespace && (!selector || selector(o));
      if (q.continueToken !== undefined) {
        return sendStatus(
          reply,
          410,
          'Expired',
          'the provided continue parameter is not valid: this server does not paginate lists; list again without it',
        );
      }
      if (!(q.watch || forceWatch)) {
        state.metrics.listServed(spec.resource);
        const rv = q.resourceVersion;
        if (rv !== undefined && rv !== 0) {
          const tooNew = rv > served.clock.current;
          const inexact = q.resourceVersionMatch === 'Exact' && rv !== served.clock.current;
          if (tooNew || inexact || rv < served.clock.start) {
            return sendStatus(
              reply,
              410,
              'Expired',
              `resourceVersion ${rv} cannot be served (current ${served.clock.current}); list without a resourceVersion`,
            );
          }
        }
        const { resourceVersion, items } = served.list(match);
        if (tableVersion) {
          return reply
            .type('application/json')
            .send(tableOfEncoded(spec, items, resourceVersion, { version: tableVersion, includeObject }));
        }
        // The items are already JSON: the list is assembled from their bytes, never re-encoded,
        // and streamed in chunks rather than joined into one copy of the whole list.
        const parts: Buffer[] = [
          Buffer.from(`{"kind":"${listKind}","apiVersion":"${apiVersion}","metadata":{"resourceVersion":"${resourceVersion}"},"items":[`),
        ];
        for (const [i, item] of items.entries()) {
          if (i > 0) parts.push(COMMA);
          parts.push(item);
        }
        parts.push(LIST_END);
        return reply.type('application/json').send(Readable.from(chunksOf(parts, 64 * 1024)));
      }

      // Watch: start "at exact" from a given resourceVersion, else from the current state.
      let fromRv: number | undefined;
      let initialEventsEnd = false;
      if (q.sendInitialEvents === true) {
        fromRv = undefined;
        initialEventsEnd = true;
      } else if (q.resourceVersion === undefined || q.resourceVersion === 0) {
        fromRv = q.sendInitialEvents === false ? served.clock.current : undefined;
      } else {
        fromRv = q.resourceVersion;
      }
      if (openWatches.size >= state.maxWatches) return refuseWatch(reply, spec.resource);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
      res.socket?.setNoDelay(true);
      // Clients wait for the response headers before reading events; a watch with nothing to
      // replay must not leave them waiting for the first event.
      res.flushHeaders();
      const expired = fromRv !== undefined ? served.expiredReason(fromRv) : undefined;
      if (expired) {
        res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', expired) })}\n`);
        return;
      }
      const sink = tableVersion ? tableWatchSink(res, spec, { version: tableVersion, includeObject }) : res;
      const watcher = served.watch(sink, { fromRv, initialEventsEnd, bookmarks: q.allowWatchBookmarks, match });
      const seconds = q.timeoutSeconds || state.minWatchTimeoutSeconds * (1 + Math.random());
      const close = () => {
        clearTimeout(timer);
        openWatches.delete(close);
        watcher.close();
      };
      const timer = setTimeout(close, seconds * 1000);
      openWatches.add(close);
      res.on('close', close);
      log.debug({ resource: spec.resource, namespace, fromRv, timeoutSeconds: seconds }, 'watch started');
    };

    const item = async (req: { params: unknown; url: string; raw: IncomingMessage }, reply: FastifyReply) => {
      if (!state.ready()) return sendStatus(reply, 503, 'ServiceUnavailable', 'the application-grid-wrapper has not synced its caches yet');
      const { namespace, name } = req.params as { namespace?: string; name: string };
      const obj = served.encoded(namespace ? `${namespace}/${name}` : name);
      if (!obj) return sendStatus(reply, 404, 'NotFound', `${spec.resource}${spec.group ? `.${spec.group}` : ''} "${name}" not found`);
      const tableVersion = tableVersionOf(req.raw.headers.accept);
      if (tableVersion) {
        let includeObject: IncludeObject;
        try {
          includeObject = includeObjectOf(new URL(req.url, 'http://x').searchParams);
        } catch (err) {
          return refuse(reply, err);
        }
        return reply.type('application/json').send(tableOfEncoded(spec, [obj], undefined, { version: tableVersion, includeObject }));
      }
      return reply.type('application/json').send(obj);
    };

    const scopes = spec.namespaced ? ['', '/namespaces/:namespace'] : [''];
    for (const scope of scopes) {
      app.get(`${base}${scope}/${spec.resource}`, (req, reply) => collection(req, reply, false));
      app.get(`${base}/watch${scope}/${spec.resource}`, (req, reply) => collection(req, reply, true));
    }
    app.get(`${base}${spec.namespaced ? '/namespaces/:namespace' : ''}/${spec.resource}/:name`, item);
  }
};

/**
 * POST/PATCH of Events, forwarded with the wrapper's credentials: the only writes kube-proxy needs.
 * Path, query and body are checked first (events.ts); what is forwarded is the checked request.
 */
const eventRoutes: FastifyPluginAsync = async (app) => {
  const { upstream, log, metrics } = app.wrapper;
  const proxy = httpProxy.createProxyServer({ target: upstream.server.origin, changeOrigin: true, xfwd: false });
  proxy.on('error', (err, req, res) => {
    log.warn({ err, url: req.url }, 'forwarding event write failed');
    const r = res as ServerResponse;
    if (!r.headersSent && typeof r.writeHead === 'function') {
      r.writeHead(502, { 'Content-Type': 'application/json' });
      r.end(JSON.stringify(status(502, 'BadGateway', `forwarding to the apiserver failed: ${err.message}`)));
    } else {
      r.destroy?.();
    }
  });
  const forward = (method: EventMethod) => async (req: { raw: IncomingMessage }, reply: FastifyReply) => {
    const raw = req.raw;
    let write: EventWrite;
    let body: Buffer;
    try {
      write = parseEventPath(method, raw.url ?? '');
      body = await readBody(raw);
      checkEventBody(write, raw.headers['content-type'], body);
    } catch (err) {
      if (!(err instanceof EventRequestError)) throw err;
      metrics.requestRefused('bad_request');
      log.info({ method, url: raw.url, err }, 'event write refused');
      return sendStatus(reply, err.code, err.reason, err.message);
    }
    const opts = await upstream.options();
    reply.hijack();
    // Never pass on a caller's identity or impersonation: the write is made as the wrapper.
    for (const h of Object.keys(raw.headers)) {
      if (h === 'authorization' || h.startsWith('impersonate-')) delete raw.headers[h];
    }
    raw.url = write.path;
    delete raw.headers['transfer-encoding'];
    raw.headers['content-length'] = String(body.length);
    proxy.web(raw, reply.raw, {
      agent: opts.agent,
      headers: (opts.headers ?? {}) as Record<string, string>,
      buffer: Readable.from([body]),
    });
  };
  for (const prefix of Object.keys(EVENT_API_PREFIXES)) {
    app.post(`${prefix}/namespaces/:namespace/events`, forward('POST'));
    app.patch(`${prefix}/namespaces/:namespace/events/:name`, forward('PATCH'));
  }
};

export async function buildServer(state: WrapperState, opts: { withResources: boolean }): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: state.log.child({ component: 'http' }) as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // Watches are long-lived; the server must not cut them.
    requestTimeout: 0,
    return503OnClosing: false,
    // No per-request child logger: a watch would keep one (with its bindings) for its whole life.
    childLoggerFactory: (logger) => logger,
  });
  app.decorate('wrapper', state);
  // No route reads a body: forwarded event writes stream it to the apiserver as it came, and a
  // refused request must get its 403, not a body-parsing 400.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));
  await app.register(healthRoutes);
  if (opts.withResources) {
    await app.register(discoveryRoutes);
    await app.register(resourceRoutes);
    await app.register(eventRoutes);
    app.setNotFoundHandler((req, reply) => {
      state.metrics.requestRefused('forbidden');
      return sendStatus(
        reply,
        403,
        'Forbidden',
        `the application-grid-wrapper does not serve ${req.method} ${req.url.split('?')[0]}: it serves get/list/watch of ${state.specs
          .map((s) => s.resource)
          .join(', ')} and create/patch of events only`,
      );
    });
  }
  return app;
}
