// Routes of the wrapper's HTTP server: method plus a path pattern whose `:name` segments are
// parameters. A few dozen routes, so a request is matched by trying those with as many segments
// as its path; where several match, fixed segments win over parameters, left to right.
import type { IncomingMessage, ServerResponse } from 'node:http';

export type Params = Readonly<Record<string, string>>;
export type Handler = (req: IncomingMessage, res: ServerResponse, params: Params) => void | Promise<void>;

interface Route {
  method: string;
  segments: readonly string[];
  handler: Handler;
  /** One character per segment, '0' fixed and '1' parameter: routes sort by it, the most specific first. */
  rank: string;
}

export type Found = { handler: Handler; params: Params } | { handler: undefined; allowed: readonly string[] };

/** A path segment that is not valid percent-encoding. */
export class BadPathError extends Error {}

export class Router {
  private readonly bySegments = new Map<number, Route[]>();

  /** GET routes answer HEAD too (Node's server leaves out the body). */
  add(method: string, pattern: string, handler: Handler): void {
    const segments = pattern.split('/').slice(1);
    const rank = segments.map((s) => (s.startsWith(':') ? '1' : '0')).join('');
    const routes = this.bySegments.get(segments.length) ?? [];
    const clash = routes.find((r) => r.method === method && r.rank === rank && r.segments.every((s, i) => s === segments[i]));
    if (clash) throw new Error(`route ${method} ${pattern} is added twice`);
    routes.push({ method, segments, handler, rank });
    routes.sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0));
    this.bySegments.set(segments.length, routes);
  }

  /** The handler and parameters for a request's method and path (without its query), or the methods the path has. */
  find(method: string, path: string): Found {
    const parts = path.split('/').slice(1);
    const allowed = new Set<string>();
    for (const route of this.bySegments.get(parts.length) ?? []) {
      const params = matchSegments(route.segments, parts);
      if (!params) continue;
      if (route.method === method || (method === 'HEAD' && route.method === 'GET')) return { handler: route.handler, params };
      allowed.add(route.method);
      if (route.method === 'GET') allowed.add('HEAD');
    }
    return { handler: undefined, allowed: [...allowed] };
  }
}

function matchSegments(pattern: readonly string[], parts: readonly string[]): Record<string, string> | undefined {
  let params: Record<string, string> | undefined;
  for (const [i, p] of pattern.entries()) {
    const part = parts[i]!;
    if (!p.startsWith(':')) {
      if (p !== part) return undefined;
      continue;
    }
    if (part === '') return undefined;
    params ??= {};
    params[p.slice(1)] = decodeSegment(part);
  }
  return params ?? {};
}

function decodeSegment(segment: string): string {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new BadPathError(`malformed percent-encoding in path segment ${JSON.stringify(segment)}`);
  }
}
