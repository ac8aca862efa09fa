// Parses and validates list/watch query parameters the way the apiserver does, so a client with a
// malformed request gets a 400 naming the parameter and the problem.
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector, SelectorError } from './selectors.ts';

export class QueryError extends Error {}

export interface ListWatchQuery {
  watch: boolean;
  /** undefined: not given; 0: "any"; N: a resourceVersion this wrapper issued (or not). */
  resourceVersion: number | undefined;
  resourceVersionMatch: 'NotOlderThan' | 'Exact' | undefined;
  allowWatchBookmarks: boolean;
  sendInitialEvents: boolean | undefined;
  timeoutSeconds: number | undefined;
  continueToken: string | undefined;
  match: ((obj: { metadata: { labels?: Record<string, string> } }) => boolean) | undefined;
}

function bool(params: URLSearchParams, name: string): boolean | undefined {
  const v = params.get(name);
  if (v === null) return undefined;
  if (v === 'true' || v === '1' || v === '') return true;
  if (v === 'false' || v === '0') return false;
  throw new QueryError(`invalid value ${JSON.stringify(v)} for query parameter "${name}": must be true or false`);
}

function nonNegativeInt(params: URLSearchParams, name: string): number | undefined {
  const v = params.get(name);
  if (v === null || v === '') return undefined;
  if (!/^\d+$/.test(v))
    throw new QueryError(`invalid value ${JSON.stringify(v)} for query parameter "${name}": must be a non-negative integer`);
  return Number(v);
}

export function parseListWatchQuery(params: URLSearchParams, fields: readonly string[]): ListWatchQuery {
  for (const name of params.keys()) {
    if (params.getAll(name).length > 1) throw new QueryError(`query parameter "${name}" given more than once`);
  }
  const watch = bool(params, 'watch') ?? false;
  const rvText = params.get('resourceVersion') ?? '';
  if (rvText !== '' && !/^\d+$/.test(rvText)) {
    throw new QueryError(
      `invalid value ${JSON.stringify(rvText)} for query parameter "resourceVersion": must be a resourceVersion returned by this server`,
    );
  }
  const resourceVersion = rvText === '' ? undefined : Number(rvText);
  const rvm = params.get('resourceVersionMatch') ?? '';
  if (rvm !== '' && rvm !== 'NotOlderThan' && rvm !== 'Exact') {
    throw new QueryError(`invalid value ${JSON.stringify(rvm)} for query parameter "resourceVersionMatch": must be NotOlderThan or Exact`);
  }
  const sendInitialEvents = bool(params, 'sendInitialEvents');
  const allowWatchBookmarks = bool(params, 'allowWatchBookmarks') ?? false;
  if (watch) {
    if (sendInitialEvents !== undefined) {
      if (rvm !== 'NotOlderThan') throw new QueryError('sendInitialEvents requires resourceVersionMatch=NotOlderThan');
      if (sendInitialEvents && !allowWatchBookmarks) throw new QueryError('sendInitialEvents=true requires allowWatchBookmarks=true');
    } else if (rvm !== '') {
      throw new QueryError('resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided');
    }
  } else {
    if (sendInitialEvents !== undefined) throw new QueryError('sendInitialEvents is forbidden for list');
    if (rvm !== '' && resourceVersion === undefined)
      throw new QueryError('resourceVersionMatch is forbidden unless resourceVersion is provided');
    if (rvm === 'Exact' && resourceVersion === 0) throw new QueryError('resourceVersionMatch "Exact" is forbidden for resourceVersion "0"');
  }
  const timeoutSeconds = nonNegativeInt(params, 'timeoutSeconds');
  nonNegativeInt(params, 'limit'); // validated, then ignored: a server may return the whole list with no continue token
  const continueToken = params.get('continue') || undefined;
  let match: ListWatchQuery['match'];
  try {
    const labels = parseLabelSelector(params.get('labelSelector') ?? '');
    const fieldReqs = parseFieldSelector(params.get('fieldSelector') ?? '', fields);
    if (labels.length || fieldReqs.length) {
      match = (obj) => matchesLabels(labels, obj.metadata.labels) && matchesFields(fieldReqs, obj);
    }
  } catch (err) {
    if (err instanceof SelectorError) throw new QueryError(err.message);
    throw err;
  }
  return {
    watch,
    resourceVersion,
    resourceVersionMatch: rvm === '' ? undefined : (rvm as 'NotOlderThan' | 'Exact'),
    allowWatchBookmarks,
    sendInitialEvents,
    timeoutSeconds,
    continueToken,
    match,
  };
}
