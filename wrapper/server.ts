// The HTTP side, on Node's own HTTP server: routes for health, discovery, the served resources
// and forwarded event writes. Anything not routed is refused with 403: the wrapper holds its own
// credentials and must not lend them. Not a web framework and proxy library: imported on top of
// Node's HTTP modules they cost 4.1 MiB of RSS and 2.4 MiB of heap, in a process of ~92 MiB
// (README, "The wrapper's memory at that scale").
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { KubeClient } from '../kube/client.ts';
import type { ListenAddress } from '../kube/flags.ts';
import { closeServer, listenAt } from '../kube/http-server.ts';
import { TEXT_CONTENT_TYPE } from '../kube/metrics-text.ts';
import { http } from '../kube/node-http.ts';
import { apiVersionOf, groupVersionPath } from '../kube/objects.ts';
import { writeParts } from './chunks.ts';
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
import { BadPathError, type Handler, type Params, Router } from './router.ts';
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

/** One HTTP server of the wrapper: the resource API (`--listen`) or health and metrics only. */
export interface WrapperServer {
  readonly server: Server;
  listen(address: ListenAddress): Promise<void>;
  /** Ends open watches, then closes the server and its connections. */
  close(): Promise<void>;
}

export function status(code: number, reason: string, message: string, details?: object) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code, ...(details ? { details } : {}) };
}

/** A complete response; Node's server leaves the body out when answering HEAD. */
function send(res: ServerResponse, code: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(code, { ...headers, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain; charset=utf-8';

const sendJson = (res: ServerResponse, body: string | Buffer | object) =>
  send(res, 200, JSON_TYPE, typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));

function sendStatus(
  res: ServerResponse,
  code: number,
  reason: string,
  message: string,
  details?: object,
  headers?: Record<string, string>,
) {
  send(res, code, JSON_TYPE, JSON.stringify(status(code, reason, message, details)), headers);
}

/** How long a client refused for too many watches is asked to wait (what the apiserver's max-in-flight filter says). */
const WATCH_RETRY_AFTER_SECONDS = 1;
/** Refusals under a burst are logged once per this period, with their count, not one line each. */
const REFUSAL_LOG_PERIOD_MS = 10_000;
/** An event write the apiserver has not answered within this long gets 504. */
const FORWARD_TIMEOUT_MS = 30_000;
/** How long a client may take to send a request's headers (Node's default), and a whole request: an event write's body is at most 1 MiB. */
const HEADERS_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 60_000;
/** Longer than the idle timeout of client-go's connections (90 s), so that the client, not the server, closes an idle connection: a request sent on a connection the server is just closing fails. */
const KEEP_ALIVE_TIMEOUT_MS = 95_000;

function healthRoutes(router: Router, state: WrapperState): void {
  const { metrics } = state;
  router.add('GET', '/healthz', (_req, res) => send(res, 200, TEXT_TYPE, 'ok'));
  router.add('GET', '/readyz', (_req, res) => {
    if (!state.ready()) return send(res, 503, TEXT_TYPE, 'caches not synced');
    send(res, 200, TEXT_TYPE, readyDetail(state.autonomy));
  });
  router.add('GET', '/metrics', (_req, res) => {
    for (const [resource, s] of Object.entries(state.served)) {
      metrics.setGauge('servicegroup_wrapper_objects', 'Objects served.', { resource }, s.count);
    }
    metrics.sampleProcess();
    metrics.setGauge('servicegroup_wrapper_ready', 'Whether caches have synced.', {}, state.ready() ? 1 : 0);
    const autonomy = state.autonomy;
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
    send(res, 200, TEXT_CONTENT_TYPE, metrics.render());
  });
}

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

function discoveryRoutes(router: Router, state: WrapperState): void {
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
  for (const spec of state.specs) {
    const k = `${spec.group}/${spec.version}`;
    if (!groupVersions.has(k)) groupVersions.set(k, { group: spec.group, version: spec.version, resources: [] });
    groupVersions.get(k)!.resources.unshift(resourceEntry(spec));
  }
  // The documents never change: encoded once.
  const fixed = (path: string, body: object) => {
    const encoded = JSON.stringify(body);
    router.add('GET', path, (_req, res) => sendJson(res, encoded));
  };
  // The apiserver's own answer, as last read (and saved), so clients get it while it is unreachable.
  router.add('GET', '/version', (_req, res) => {
    const version = state.autonomy?.version;
    if (version === undefined) return sendStatus(res, 503, 'ServiceUnavailable', 'the apiserver version is not known yet');
    sendJson(res, version as object);
  });
  fixed('/api', { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] });
  fixed('/apis', {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: [...groupVersions.values()]
      .filter((gv) => gv.group !== '')
      .map((gv) => {
        const v = { groupVersion: `${gv.group}/${gv.version}`, version: gv.version };
        return { name: gv.group, versions: [v], preferredVersion: v };
      }),
  });
  for (const gv of groupVersions.values()) {
    const groupVersion = gv.group === '' ? gv.version : `${gv.group}/${gv.version}`;
    const path = gv.group === '' ? `/api/${gv.version}` : `/apis/${gv.group}/${gv.version}`;
    fixed(path, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources: gv.resources });
    if (gv.group !== '') {
      const v = { groupVersion, version: gv.version };
      fixed(`/apis/${gv.group}`, { kind: 'APIGroup', apiVersion: 'v1', name: gv.group, versions: [v], preferredVersion: v });
    }
  }
}

/** Registers the served resources' routes; returns what ends their open watches. */
function resourceRoutes(router: Router, state: WrapperState): () => void {
  const { log } = state;
  const openWatches = new Set<() => void>();
  let refusedSinceLog = 0;
  let lastRefusalLog = 0;
  const refuseWatch = (res: ServerResponse, resource: string) => {
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
    sendStatus(
      res,
      429,
      'TooManyRequests',
      `too many open watches (${openWatches.size} of at most ${state.maxWatches}); retry after ${WATCH_RETRY_AFTER_SECONDS}s`,
      { retryAfterSeconds: WATCH_RETRY_AFTER_SECONDS },
      { 'Retry-After': String(WATCH_RETRY_AFTER_SECONDS) },
    );
  };
  const bookmarkTimer = setInterval(() => {
    for (const s of Object.values(state.served)) s.bookmark();
  }, state.bookmarkIntervalMs);

  for (const spec of state.specs) {
    const served = state.served[spec.resource]!;
    const base = groupVersionPath(spec);
    const fields = supportedFields(spec);
    const listKind = `${spec.kind}List`;
    const apiVersion = apiVersionOf(spec);

    const refuse = (res: ServerResponse, err: unknown) => {
      if (err instanceof QueryError) {
        state.metrics.requestRefused('bad_request');
        return sendStatus(res, 400, 'BadRequest', err.message);
      }
      throw err;
    };

    const collection = (req: IncomingMessage, res: ServerResponse, params: Params, forceWatch: boolean) => {
      if (!state.ready()) return sendStatus(res, 503, 'ServiceUnavailable', 'the application-grid-wrapper has not synced its caches yet');
      const namespace = params.namespace;
      const query = new URL(req.url ?? '/', 'http://x').searchParams;
      let q: ReturnType<typeof parseListWatchQuery>;
      try {
        q = parseListWatchQuery(query, fields);
      } catch (err) {
        return refuse(res, err);
      }
      // `kubectl get` asks for the Table form; everything else gets the objects.
      const tableVersion = tableVersionOf(req.headers.accept);
      let includeObject: IncludeObject = 'Metadata';
      try {
        if (tableVersion) includeObject = includeObjectOf(query);
      } catch (err) {
        return refuse(res, err);
      }
      const selector = q.match;
      const match =
        namespace === undefined
          ? selector
          : (o: { metadata: { namespace?: string; labels?: Record<string, string> } }) =>
              o.metadata.namespace === namespace && (!selector || selector(o));
      if (q.continueToken !== undefined) {
        return sendStatus(
          res,
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
              res,
              410,
              'Expired',
              `resourceVersion ${rv} cannot be served (current ${served.clock.current}); list without a resourceVersion`,
            );
          }
        }
        const { resourceVersion, items } = served.list(match);
        if (tableVersion) {
          return sendJson(res, tableOfEncoded(spec, items, resourceVersion, { version: tableVersion, includeObject }));
        }
        // The items are already JSON: the list is written from their own bytes, never re-encoded
        // nor copied into one buffer, with its length known up front.
        const parts: Buffer[] = [
          Buffer.from(`{"kind":"${listKind}","apiVersion":"${apiVersion}","metadata":{"resourceVersion":"${resourceVersion}"},"items":[`),
        ];
        let length = parts[0]!.length + LIST_END.length;
        for (const [i, item] of items.entries()) {
          if (i > 0) parts.push(COMMA);
          parts.push(item);
          length += item.length + (i > 0 ? 1 : 0);
        }
        parts.push(LIST_END);
        res.writeHead(200, { 'Content-Type': JSON_TYPE, 'Content-Length': length });
        if (req.method === 'HEAD') return void res.end();
        return writeParts(res, parts);
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
      if (openWatches.size >= state.maxWatches) return refuseWatch(res, spec.resource);
      res.writeHead(200, { 'Content-Type': JSON_TYPE, 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
      // A watch has no head of its own: HEAD gets the headers a watch would start with.
      if (req.method === 'HEAD') return void res.end();
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

    const item: Handler = (req, res, params) => {
      if (!state.ready()) return sendStatus(res, 503, 'ServiceUnavailable', 'the application-grid-wrapper has not synced its caches yet');
      const { namespace, name } = params as { namespace?: string; name: string };
      const obj = served.encoded(namespace ? `${namespace}/${name}` : name);
      if (!obj) return sendStatus(res, 404, 'NotFound', `${spec.resource}${spec.group ? `.${spec.group}` : ''} "${name}" not found`);
      const tableVersion = tableVersionOf(req.headers.accept);
      if (tableVersion) {
        let includeObject: IncludeObject;
        try {
          includeObject = includeObjectOf(new URL(req.url ?? '/', 'http://x').searchParams);
        } catch (err) {
          return refuse(res, err);
        }
        return sendJson(res, tableOfEncoded(spec, [obj], undefined, { version: tableVersion, includeObject }));
      }
      sendJson(res, obj);
    };

    const scopes = spec.namespaced ? ['', '/namespaces/:namespace'] : [''];
    for (const scope of scopes) {
      router.add('GET', `${base}${scope}/${spec.resource}`, (req, res, params) => collection(req, res, params, false));
      router.add('GET', `${base}/watch${scope}/${spec.resource}`, (req, res, params) => collection(req, res, params, true));
    }
    router.add('GET', `${base}${spec.namespaced ? '/namespaces/:namespace' : ''}/${spec.resource}/:name`, item);
  }
  return () => {
    clearInterval(bookmarkTimer);
    for (const close of [...openWatches]) close();
  };
}

/** Request headers that belong to one connection (RFC 9110 7.6.1) and are never passed on. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * POST/PATCH of Events, forwarded with the wrapper's credentials: the only writes kube-proxy needs.
 * Path, query and body are checked first (events.ts); what is forwarded is the checked request.
 */
function eventRoutes(router: Router, state: WrapperState): void {
  const { upstream, log, metrics } = state;
  const forward =
    (method: EventMethod): Handler =>
    async (req, res) => {
      let write: EventWrite;
      let body: Buffer;
      try {
        write = parseEventPath(method, req.url ?? '');
        body = await readBody(req);
        checkEventBody(write, req.headers['content-type'], body);
      } catch (err) {
        if (!(err instanceof EventRequestError)) throw err;
        metrics.requestRefused('bad_request');
        log.info({ method, url: req.url, err }, 'event write refused');
        return sendStatus(res, err.code, err.reason, err.message);
      }
      const opts = await upstream.options();
      // Never pass on a caller's identity or impersonation: the write is made as the wrapper.
      const headers: Record<string, string | string[]> = {};
      for (const [h, v] of Object.entries(req.headers)) {
        if (v === undefined || HOP_BY_HOP.has(h) || h === 'host' || h === 'authorization' || h.startsWith('impersonate-')) continue;
        headers[h] = v;
      }
      Object.assign(headers, opts.headers, { 'content-length': String(body.length) });
      const url = new URL(write.path, upstream.server);
      const send = url.protocol === 'https:' ? httpsRequest : http.request;
      const out = send(url, { ...opts, method, headers, timeout: FORWARD_TIMEOUT_MS }, (answer) => {
        const passed: Record<string, string | string[]> = {};
        for (const [h, v] of Object.entries(answer.headers)) if (v !== undefined && !HOP_BY_HOP.has(h)) passed[h] = v;
        res.writeHead(answer.statusCode ?? 502, passed);
        pipeline(answer, res).catch((err: unknown) =>
          log.warn({ err, url: write.path }, 'forwarding the apiserver answer to an event write failed'),
        );
      });
      const fail = (code: number, reason: string, err: Error) => {
        log.warn({ err, url: write.path }, 'forwarding event write failed');
        if (!res.headersSent) sendStatus(res, code, reason, `forwarding to the apiserver failed: ${err.message}`);
        else res.destroy();
      };
      out.on('timeout', () => out.destroy(new GatewayTimeout(`no answer from the apiserver within ${FORWARD_TIMEOUT_MS} ms`)));
      out.on('error', (err) => (err instanceof GatewayTimeout ? fail(504, 'Timeout', err) : fail(502, 'BadGateway', err)));
      // A caller that goes away takes its write's forwarding with it.
      res.on('close', () => {
        if (!res.writableFinished) out.destroy();
      });
      out.end(body);
    };
  for (const prefix of Object.keys(EVENT_API_PREFIXES)) {
    router.add('POST', `${prefix}/namespaces/:namespace/events`, forward('POST'));
    router.add('PATCH', `${prefix}/namespaces/:namespace/events/:name`, forward('PATCH'));
  }
}

class GatewayTimeout extends Error {}

/** What a request no route takes gets: 403 on the resource API (nothing else is lent the wrapper's credentials), 404 or 405 elsewhere. */
type Unrouted = (req: IncomingMessage, res: ServerResponse, allowed: readonly string[]) => void;

function refuseUnserved(state: WrapperState): Unrouted {
  const served = state.specs.map((s) => s.resource).join(', ');
  return (req, res) => {
    state.metrics.requestRefused('forbidden');
    sendStatus(
      res,
      403,
      'Forbidden',
      `the application-grid-wrapper does not serve ${req.method} ${(req.url ?? '/').split('?')[0]}: it serves get/list/watch of ${served} and create/patch of events only`,
    );
  };
}

const notFound: Unrouted = (req, res, allowed) => {
  const path = (req.url ?? '/').split('?')[0];
  if (allowed.length) {
    return sendStatus(res, 405, 'MethodNotAllowed', `${req.method} is not allowed on ${path}; allowed: ${allowed.join(', ')}`, undefined, {
      Allow: allowed.join(', '),
    });
  }
  sendStatus(res, 404, 'NotFound', `${path} is not served here: /healthz, /readyz and /metrics are`);
};

/** Requests Node's parser refuses before any route sees them, answered with a Status as the apiserver would. */
function answerClientError(log: Logger) {
  return (err: Error & { code?: string }, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    log.debug({ err }, 'malformed request refused');
    const [code, reason, text] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'RequestHeaderFieldsTooLarge', 'Request Header Fields Too Large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Timeout', 'Request Timeout']
          : [400, 'BadRequest', 'Bad Request'];
    const body = JSON.stringify(status(code, reason, `the request could not be read: ${err.message}`));
    socket.end(
      `HTTP/1.1 ${code} ${text}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };
}

export function buildServer(state: WrapperState, opts: { withResources: boolean }): WrapperServer {
  const router = new Router();
  const log = state.log.child({ component: 'http' });
  healthRoutes(router, state);
  let endWatches = () => {};
  let unrouted = notFound;
  if (opts.withResources) {
    discoveryRoutes(router, state);
    endWatches = resourceRoutes(router, state);
    eventRoutes(router, state);
    unrouted = refuseUnserved(state);
  }
  const fail = (req: IncomingMessage, res: ServerResponse, err: unknown) => {
    log.error({ err, method: req.method, url: req.url }, 'request failed');
    if (!res.headersSent) sendStatus(res, 500, 'InternalError', `internal error: ${(err as Error).message}`);
    else res.destroy();
  };
  const server = http.createServer(
    {
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    },
    (req, res) => {
      try {
        const found = router.find(req.method ?? 'GET', (req.url ?? '/').split('?')[0]!);
        if (!found.handler) return unrouted(req, res, found.allowed);
        const done = found.handler(req, res, found.params);
        if (done) done.catch((err: unknown) => fail(req, res, err));
      } catch (err) {
        if (err instanceof BadPathError) {
          state.metrics.requestRefused('bad_request');
          return sendStatus(res, 400, 'BadRequest', err.message);
        }
        fail(req, res, err);
      }
    },
  );
  server.on('clientError', answerClientError(log));
  return {
    server,
    listen: (address) => listenAt(server, address),
    close: async () => {
      // Before the server waits for open connections: watches would otherwise hold it open.
      endWatches();
      await closeServer(server);
    },
  };
}
