// Wrapper benchmarks 2 and 3: scale, memory and reaction to a node relabel. 500 nodes in 50
// NodeUnits, 5,000 topology-marked Services, 20,000 endpoints, 10 watchers through the wrapper.
// Prints RSS (and heap when the program exports it), CPU idle and under updates, the time of a
// kube-proxy style initial list (through the wrapper and from the apiserver), and the time from a
// node relabel until every watcher holds the corrected slices. A step that fails (e.g. watchers
// that never converge after a relabel) is marked FAILED in the table and listed in the JSON's
// `failures`, with every figure measured by the other steps kept; the exit code is then 1.
//   --nodes 500 --units 50 --services 5000 --endpoints-per-service 4 --watchers 10 --rate 1000
//   --relabels 5   --wrapper-cmd '...' | --wrapper-url URL   --out f.json
// Services carry both topology annotations (this project's and SuperEdge's `topologyKeys`).
import { parseArgs } from 'node:util';
import { startCluster } from '../test/cluster/cluster.ts';
import { installWrapperRbac } from '../test/wrapper-harness.ts';
import {
  apiserverEndpoint,
  cpuOver,
  type Endpoint,
  inParallel,
  KUBE_PROXY_SELECTOR,
  machine,
  procStats,
  request,
  requestOk,
  residentParts,
  startWrapperUnderTest,
  WatchStream,
  wholeNumber,
  withQuery,
  writeJson,
} from './lib.ts';
import {
  nodeName,
  populateScale,
  SCALE_NS,
  nodeOfEndpoint as scaleNodeOfEndpoint,
  scaleSlice,
  unitOf as scaleUnitOf,
} from './scale-objects.ts';
import { median, printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '500' },
    units: { type: 'string', default: '50' },
    services: { type: 'string', default: '5000' },
    'endpoints-per-service': { type: 'string', default: '4' },
    watchers: { type: 'string', default: '10' },
    rate: { type: 'string', default: '1000' },
    relabels: { type: 'string', default: '5' },
    'wrapper-cmd': { type: 'string' },
    'wrapper-url': { type: 'string' },
    out: { type: 'string' },
  },
});
const N = {
  nodes: wholeNumber(values.nodes!, '--nodes'),
  units: wholeNumber(values.units!, '--units'),
  services: wholeNumber(values.services!, '--services'),
  eps: wholeNumber(values['endpoints-per-service']!, '--endpoints-per-service'),
  watchers: wholeNumber(values.watchers!, '--watchers'),
  rate: wholeNumber(values.rate!, '--rate'),
  relabels: wholeNumber(values.relabels!, '--relabels'),
};
const NS = SCALE_NS;
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';
const unitOf = (i: number) => scaleUnitOf(N, i);
const nodeOfEndpoint = (s: number, k: number) => scaleNodeOfEndpoint(N, s, k);
const slice = (s: number, version = 0) => scaleSlice(N, s, version);

async function main() {
  const cluster = await startCluster();
  try {
    const api = apiserverEndpoint(cluster);
    const created = await populateScale(api, N);
    console.error(`[bench] created ${N.nodes} nodes, ${N.services} services, ${N.services * N.eps} endpoints in ${created.toFixed(1)} s`);

    const kubeconfig = await installWrapperRbac(cluster);
    const t = performance.now();
    const wrapper = await startWrapperUnderTest(cluster, {
      cmd: values['wrapper-cmd'],
      url: values['wrapper-url'],
      nodeName: nodeName(0),
      kubeconfig,
    });
    const figures: Record<string, number> = { syncMs: performance.now() - t };
    const ep: Endpoint = { url: wrapper.url };

    // Each step below is measured on its own: one that fails (a watcher that never converges) is
    // marked, and what the others measured is still printed and written.
    const failures: Record<string, string> = {};
    const step = async (name: string, fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (err) {
        failures[name] = err instanceof Error ? err.message : String(err);
        console.error(`[bench] ${name} failed: ${failures[name]}`);
      }
    };

    // Each watcher keeps the latest version of every slice it was sent.
    type Held = Map<string, { nodes: Set<string> }>;
    const held: Held[] = [];
    const watchers: WatchStream[] = [];
    const wake: (() => void)[] = [];
    await step('watchers', async () => {
      const list = await requestOk<{ metadata: { resourceVersion?: string } }>(
        ep,
        'GET',
        withQuery(SLICES, { labelSelector: KUBE_PROXY_SELECTOR }),
      );
      const path = withQuery(SLICES, {
        labelSelector: KUBE_PROXY_SELECTOR,
        watch: 1,
        allowWatchBookmarks: true,
        resourceVersion: list.metadata.resourceVersion,
      });
      for (let w = 0; w < N.watchers; w++) {
        const h: Held = new Map();
        held.push(h);
        watchers.push(
          new WatchStream(ep, path, (ev) => {
            if (ev.type === 'BOOKMARK' || ev.type === 'ERROR') return;
            const key = `${ev.object.metadata.namespace}/${ev.object.metadata.name}`;
            if (ev.type === 'DELETED') h.delete(key);
            else h.set(key, { nodes: new Set((ev.object.endpoints ?? []).map((e: { nodeName?: string }) => e.nodeName)) });
            for (const f of wake.splice(0)) f();
          }),
        );
      }
      await Promise.all(watchers.map((w) => w.opened));
    });

    await step('memory and idle CPU', async () => {
      if (wrapper.pid) {
        await new Promise((r) => setTimeout(r, 3000));
        figures.rssAfterSyncMiB = procStats(wrapper.pid).rssMiB;
        // Where it is: the process's own memory, and the pages of its executable and libraries.
        const parts = residentParts(wrapper.pid);
        figures.anonymousAfterSyncMiB = parts.anonymousMiB;
        figures.fileAfterSyncMiB = parts.fileMiB;
        figures.idleCpu = await cpuOver(wrapper.pid, 10_000);
        // What an idle node keeps resident, once whatever the sync left behind is collected.
        figures.rssIdleMiB = procStats(wrapper.pid).rssMiB;
      }
      if (wrapper.metricsUrl) {
        const m = await request({ url: wrapper.metricsUrl }, 'GET', '').catch(() => ({ body: '' }));
        const heap = /^(?:nodejs_heap_size_used_bytes|process_heap_bytes|nodejs_heap_used_bytes)\s+(\S+)/m.exec(m.body)?.[1];
        if (heap) figures.heapUsedMiB = Number(heap) / 1048576;
      }
    });

    // kube-proxy's first list: limit=500&resourceVersion=0 with its label selector, all pages.
    const initialList = async (e: Endpoint) => {
      const started = performance.now();
      let cont = '';
      let items = 0;
      do {
        const page = await requestOk<{ items: unknown[]; metadata: { continue?: string } }>(
          e,
          'GET',
          withQuery(SLICES, { limit: 500, resourceVersion: 0, labelSelector: KUBE_PROXY_SELECTOR, continue: cont }),
        );
        items += page.items.length;
        cont = page.metadata.continue ?? '';
      } while (cont);
      return { ms: performance.now() - started, items };
    };
    const wrapperLists: number[] = [];
    const apiLists: number[] = [];
    await step('initial lists', async () => {
      for (let i = 0; i < 5; i++) {
        wrapperLists.push((await initialList(ep)).ms);
        apiLists.push((await initialList(api)).ms);
      }
      figures.initialListWrapperMs = median(wrapperLists);
      figures.initialListApiserverMs = median(apiLists);
    });

    // Load: slice updates at N.rate/s for 5 s; CPU of the wrapper meanwhile.
    let achieved = 0;
    await step('load', async () => {
      if (!wrapper.pid) return;
      const cpu = cpuOver(wrapper.pid, 5000);
      const total = N.rate * 5;
      const started = performance.now();
      await inParallel(total, 64, async (k) => {
        const due = started + (k * 1000) / N.rate;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        const s = k % N.services;
        await requestOk(api, 'PUT', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices/svc-${s}-1`, slice(s, k + 1));
      });
      achieved = total / ((performance.now() - started) / 1000);
      figures.loadCpu = await cpu;
      figures.loadRate = achieved;
      figures.rssUnderLoadMiB = procStats(wrapper.pid).rssMiB;
    });
    await new Promise((r) => setTimeout(r, 2000));

    // Relabel: a node of the wrapper's NodeUnit moves to the next one; every slice with an
    // endpoint on it must lose that endpoint at every watcher (and regain it when it moves back).
    const reactions: number[] = [];
    const moved = N.units; // node-50: same unit as node-0, not the wrapper's own node
    const affected = [
      ...new Set(
        Array.from({ length: N.services }, (_, s) => s).filter((s) =>
          Array.from({ length: N.eps }, (_, k) => nodeOfEndpoint(s, k)).includes(moved),
        ),
      ),
    ].map((s) => `${NS}/svc-${s}-1`);
    await step('relabel', async () => {
      if (held.length === 0) throw new Error('no watcher to observe it (the watchers step failed)');
      for (let r = 0; r < N.relabels; r++) {
        const away = r % 2 === 0;
        const zone = away ? unitOf(1) : unitOf(0);
        const done = () => held.every((h) => affected.every((k) => h.get(k)?.nodes.has(nodeName(moved)) === !away));
        const started = performance.now();
        await requestOk(
          api,
          'PATCH',
          `/api/v1/nodes/${nodeName(moved)}`,
          { metadata: { labels: { zone } } },
          'application/merge-patch+json',
        );
        const deadline = Date.now() + 30_000;
        while (!done()) {
          if (Date.now() > deadline) throw new Error(`relabel ${r + 1}: watchers did not converge in 30 s`);
          await new Promise<void>((res) => {
            wake.push(res);
            setTimeout(res, 50);
          });
        }
        reactions.push(performance.now() - started);
      }
    });
    const watchersEnded = watchers.filter((w) => w.closed).length;
    if (watchersEnded) failures.watchers ??= `${watchersEnded} of ${N.watchers} watches were ended by the server during the run`;
    for (const w of watchers) w.close();
    if (reactions.length) figures.relabelMedianMs = median(reactions);

    const f = (x: number | undefined, unit: string, digits = 1) => (typeof x === 'number' ? `${x.toFixed(digits)} ${unit}` : 'n/a');
    // A failed step's figures read FAILED rather than n/a, so a partial table cannot pass for a whole one.
    const or = (failed: string, cell: string) => (failures[failed] ? `FAILED (${cell})` : cell);
    printTable(
      `wrapper at scale: ${N.nodes} nodes / ${N.units} NodeUnits, ${N.services} Services, ${N.services * N.eps} endpoints, ${N.watchers} watchers (${machine()})${Object.keys(failures).length ? ' — INCOMPLETE RUN' : ''}`,
      ['what', 'value', 'target'],
      [
        ['time to ready (list + sync)', f(figures.syncMs, 'ms', 0), ''],
        ['RSS after sync', or('memory and idle CPU', f(figures.rssAfterSyncMiB, 'MiB')), '≤ 100 MB'],
        [
          '… of which anonymous / file-backed',
          or('memory and idle CPU', `${f(figures.anonymousAfterSyncMiB, 'MiB')} / ${f(figures.fileAfterSyncMiB, 'MiB')}`),
          '',
        ],
        ['RSS after the 10 s idle window', or('memory and idle CPU', f(figures.rssIdleMiB, 'MiB')), '≤ 100 MB'],
        ['heap used after sync', or('memory and idle CPU', f(figures.heapUsedMiB, 'MiB')), ''],
        [
          'CPU idle (10 s)',
          or('memory and idle CPU', f(figures.idleCpu === undefined ? undefined : figures.idleCpu * 100, '% of a core', 2)),
          '≈ 0',
        ],
        [
          `CPU under ${achieved.toFixed(0)} updates/s (asked ${N.rate}/s)`,
          or('load', f(figures.loadCpu === undefined ? undefined : figures.loadCpu * 100, '% of a core')),
          '',
        ],
        ['RSS under load', or('load', f(figures.rssUnderLoadMiB, 'MiB')), ''],
        ['kube-proxy initial list through wrapper (median of 5)', or('initial lists', f(figures.initialListWrapperMs, 'ms')), ''],
        ['same list from the apiserver (median of 5)', or('initial lists', f(figures.initialListApiserverMs, 'ms')), ''],
        [
          `relabel → all ${N.watchers} watchers corrected (${affected.length} slices, median of ${reactions.length} of ${N.relabels})`,
          or('relabel', f(figures.relabelMedianMs, 'ms')),
          '≤ 50 ms',
        ],
        ...Object.entries(failures).map(([name, why]) => [`FAILED: ${name}`, why, '']),
      ],
    );
    writeJson(values.out, {
      benchmark: 'wrapper-scale',
      machine: machine(),
      date: new Date().toISOString(),
      params: N,
      complete: Object.keys(failures).length === 0,
      failures,
      figures,
      reactions,
      wrapperLists,
      apiLists,
    });
    if (Object.keys(failures).length) process.exitCode = 1;
  } finally {
    await cluster.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
