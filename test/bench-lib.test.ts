// The benchmark harness's own watch and query helpers, against a real apiserver: a benchmark that
// loses a watch, or asks for `resourceVersion=undefined`, measures nothing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  apiserverEndpoint,
  goDuration,
  parseSeconds,
  procStats,
  ResumableWatch,
  requestOk,
  residentParts,
  withQuery,
} from '../bench/lib.ts';
import { useCluster } from './cluster/cluster.ts';
import { waitFor } from './cluster/processes.ts';

const cluster = useCluster();

describe('benchmark helpers', () => {
  test('resident memory splits into anonymous and file-backed parts that add up to the RSS', () => {
    const parts = residentParts(process.pid);
    const rss = procStats(process.pid).rssMiB;
    const status = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) / 1024;
    assert.ok(Math.abs(parts.rssMiB - rss) < 2, `two readings of smaps_rollup: ${parts.rssMiB} and ${rss} MiB`);
    assert.ok(Math.abs(rss - status) < 8, `smaps_rollup ${rss} MiB against the status file's approximate ${status} MiB`);
    assert.ok(parts.anonymousMiB > 1 && parts.fileMiB > 1, JSON.stringify(parts));
  });

  test('withQuery leaves out undefined and empty values', () => {
    assert.equal(withQuery('/a', { watch: 1, resourceVersion: undefined, continue: '' }), '/a?watch=1');
    assert.equal(withQuery('/a?x=1', { labelSelector: '!k' }), '/a?x=1&labelSelector=%21k');
    assert.equal(withQuery('/a', {}), '/a');
  });

  test('durations: Go form and integer seconds, both ways; a bad one names the flag', () => {
    assert.deepEqual([60, 90, 600, 3725, 5, 7200, 0].map(goDuration), ['1m', '1m30s', '10m', '1h2m5s', '5s', '2h', '0s']);
    assert.deepEqual(
      ['1m30s', '90', '2h', '45s'].map((d) => parseSeconds(d, '--x')),
      [90, 90, 7200, 45],
    );
    assert.throws(() => parseSeconds('abc', '--resync'), /--resync: "abc" is not a duration/);
    assert.throws(() => parseSeconds('', '--resync'), /--resync/);
  });

  test('ResumableWatch re-opens a watch the apiserver ends and misses no object written meanwhile', async () => {
    const api = apiserverEndpoint(cluster());
    const ns = 'resumable';
    await requestOk(api, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const seen = new Set<string>();
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    const create = (name: string) => requestOk(api, 'POST', path, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name } });
    // The apiserver ends each watch after a second, as it does at its request timeout or under a burst.
    const watch = new ResumableWatch(
      api,
      path,
      { timeoutSeconds: '1' },
      (ev) => {
        if (ev.type === 'ADDED') seen.add(ev.object.metadata.name);
      },
      (items) => {
        for (const o of items) seen.add(o.metadata.name);
      },
    );
    await watch.opened;
    try {
      await create('before');
      await waitFor('the first object', async () => (seen.has('before') ? true : undefined));
      for (let i = 0; i < 5; i++) {
        const reopened = watch.reopened;
        await create(`cm-${i}`);
        await waitFor(`cm-${i} seen`, async () => (seen.has(`cm-${i}`) ? true : undefined), { timeoutMs: 20_000 });
        await waitFor('the apiserver to end the watch and the watch re-opened', async () => (watch.reopened > reopened ? true : undefined));
      }
      assert.ok(watch.reopened >= 5, `re-opened ${watch.reopened} times`);
      assert.deepEqual([...seen].sort(), ['before', 'cm-0', 'cm-1', 'cm-2', 'cm-3', 'cm-4']);
    } finally {
      watch.close();
    }
  });
});
