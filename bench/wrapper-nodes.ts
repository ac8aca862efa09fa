// Wrapper benchmark 4: what one wrapper costs as the cluster's node count grows, with membership
// from every Node (--membership=nodes, the old way) and from NodeUnits (--membership=nodeunits).
// For each node count: nodes with a kubelet's labels and a kubelet-sized status (conditions and a
// status.images list), each node's status updated about once per --update-period-seconds as
// kubelets do (a strategic merge patch of the conditions' heartbeats), Services and endpoints
// marked with a topology key, and the controller keeping the NodeUnits. Per wrapper:
// bytes it read from the apiserver per minute (/proc/<pid>/io rchar; over a window of several
// minutes, as an idle watch carries one bookmark a minute and a one-minute window holds one or two
// of each depending on where it falls), RSS, and the time from a
// node relabel until a watcher of the wrapper holds the corrected slices. The controller's RSS and
// CPU at each node count too.
//   --nodes 1000,5000,10000 --units 50 --services 5000 --endpoints-per-service 4 --images 40
//   --update-period-seconds 60 --window-seconds 300 --relabels 4 --modes nodes,nodeunits
//   --nodes-mode-up-to 5000 (membership `nodes` only up to this node count; its cost is the one that grows)
//   --wrapper-cmd '<cmd with {listen} {node} {kubeconfig} {metrics} {state}>' (--membership=<mode> is appended)
//   --controller-cmd '<cmd with {kubeconfig} {metrics} {resyncSeconds}>'   --out f.json
// The nodes are plain Node objects whose status the benchmark itself updates, as kubelets would:
// no kubelet or kwok runs, so there are no node Leases (kube-node-lease) either. At 10,000 nodes a
// Lease renewal every 10 s per node would be ~1,000 writes/s, more than this apiserver takes on two
// shared cores, and Leases are not what the wrapper reads: only Node and NodeUnit traffic is.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type Cluster, startCluster } from '../test/cluster/cluster.ts';
import { installCrds, installRbac } from '../test/controllers-helpers.ts';
import { installWrapperRbac } from '../test/wrapper-harness.ts';
import {
  apiserverEndpoint,
  cpuOver,
  DEFAULT_CONTROLLER_CMD,
  DEFAULT_WRAPPER_CMD,
  type Endpoint,
  inParallel,
  machine,
  procStats,
  request,
  requestOk,
  startControllerUnderTest,
  startWrapperUnderTest,
  WatchStream,
  writeJson,
} from './lib.ts';
import { median, printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000,5000,10000' },
    units: { type: 'string', default: '50' },
    services: { type: 'string', default: '5000' },
    'endpoints-per-service': { type: 'string', default: '4' },
    images: { type: 'string', default: '40' },
    'update-period-seconds': { type: 'string', default: '60' },
    'window-seconds': { type: 'string', default: '300' },
    relabels: { type: 'string', default: '4' },
    modes: { type: 'string', default: 'nodes,nodeunits' },
    'nodes-mode-up-to': { type: 'string' },
    'wrapper-cmd': { type: 'string' },
    'controller-cmd': { type: 'string' },
    out: { type: 'string' },
  },
});

function positive(flag: string): number {
  const n = Number(values[flag as keyof typeof values]);
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`--${flag} must be a positive integer, got ${JSON.stringify(values[flag as keyof typeof values])}`);
  return n;
}
const P = {
  nodeCounts: String(values.nodes)
    .split(',')
    .map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n <= 0)
        throw new Error(`--nodes must be a comma-separated list of positive integers, got ${values.nodes}`);
      return n;
    }),
  units: positive('units'),
  services: positive('services'),
  eps: positive('endpoints-per-service'),
  images: positive('images'),
  updatePeriodS: positive('update-period-seconds'),
  windowS: positive('window-seconds'),
  relabels: positive('relabels'),
  modes: String(values.modes).split(','),
  nodesModeUpTo: values['nodes-mode-up-to'] === undefined ? Number.POSITIVE_INFINITY : positive('nodes-mode-up-to'),
};
for (const m of P.modes) if (m !== 'nodes' && m !== 'nodeunits') throw new Error(`--modes entries must be nodes or nodeunits, got ${m}`);

const NS = 'nodes-bench';
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';
const nodeName = (i: number) => `node-${i}`;
const unitOf = (i: number) => `unit-${i % P.units}`;

/** The labels a kubelet on a cloud VM registers its Node with (the topology key comes on top). */
function kubeletLabels(i: number): Record<string, string> {
  return {
    'beta.kubernetes.io/arch': 'amd64',
    'beta.kubernetes.io/os': 'linux',
    'kubernetes.io/arch': 'amd64',
    'kubernetes.io/hostname': nodeName(i),
    'kubernetes.io/os': 'linux',
    'node.kubernetes.io/instance-type': 'e2-standard-4',
    'topology.kubernetes.io/region': 'europe-west1',
    'topology.kubernetes.io/zone': `europe-west1-${'bcd'[i % 3]}`,
  };
}

/** A status the size a kubelet reports: conditions, addresses, capacity and the node's images. */
function nodeStatus(i: number, beat: string) {
  const condition = (type: string, status: string, reason: string) => ({
    type,
    status,
    reason,
    message: `kubelet reports ${reason}`,
    lastHeartbeatTime: beat,
    lastTransitionTime: '2026-01-01T00:00:00Z',
  });
  return {
    conditions: [
      condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
      condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
      condition('PIDPressure', 'False', 'KubeletHasSufficientPID'),
      condition('Ready', 'True', 'KubeletReady'),
    ],
    addresses: [
      { type: 'InternalIP', address: `10.200.${(i >> 8) & 255}.${i & 255}` },
      { type: 'Hostname', address: nodeName(i) },
    ],
    capacity: { cpu: '4', memory: '8Gi', pods: '110' },
    allocatable: { cpu: '4', memory: '7Gi', pods: '110' },
    images: Array.from({ length: P.images }, (_, k) => ({
      names: [
        `registry.example.internal/team-${k % 7}/service-${k}@sha256:${(k * 7919 + 1).toString(16).padStart(64, '0')}`,
        `registry.example.internal/team-${k % 7}/service-${k}:v1.${k}.0`,
      ],
      sizeBytes: 10_000_000 + k * 123_457,
    })),
  };
}

function slice(s: number, nodes: number) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `svc-${s}-1`, namespace: NS, labels: { 'kubernetes.io/service-name': `svc-${s}` } },
    addressType: 'IPv4',
    ports: [{ port: 80, protocol: 'TCP' }],
    endpoints: Array.from({ length: P.eps }, (_, k) => {
      const ip = s * P.eps + k;
      return {
        addresses: [`10.${(ip >> 16) & 255}.${(ip >> 8) & 255}.${ip & 255}`],
        nodeName: nodeName((s * P.eps + k) % nodes),
        conditions: { ready: true },
      };
    }),
  };
}

/** Bytes a process read through system calls (sockets included) since it started. */
const bytesRead = (pid: number) => Number(/^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0);

/** The wrapper's count of objects received from upstream (undefined when it does not export it). */
async function objectsReceived(metricsUrl: string | undefined): Promise<number | undefined> {
  if (!metricsUrl) return undefined;
  const m = await request({ url: metricsUrl }, 'GET', '').catch(() => ({ body: '' }));
  const samples = [...m.body.matchAll(/^servicegroup_wrapper_upstream_objects_received_total\{[^}]*\} (\S+)$/gm)];
  return samples.length ? samples.reduce((n, s) => n + Number(s[1]), 0) : undefined;
}

const CONDITION_TYPES = ['MemoryPressure', 'DiskPressure', 'PIDPressure', 'Ready'];

/**
 * A status update as a kubelet sends it when nothing but time has changed: a strategic merge
 * patch of the conditions' heartbeats (the kubelet diffs the status it reported last against the
 * new one and sends the difference; addresses, capacity and images go only when they change).
 * The stored Node keeps its full status, so every watcher of Nodes still receives the whole
 * object with each update. Resending the whole status as a merge patch instead made the apiserver
 * decode and merge ~10 KB per update, which a real cluster does not ask of it.
 */
function heartbeatPatch(beat: string) {
  return {
    status: {
      '$setElementOrder/conditions': CONDITION_TYPES.map((type) => ({ type })),
      conditions: CONDITION_TYPES.map((type) => ({ type, lastHeartbeatTime: beat })),
    },
  };
}

/**
 * At most this many status updates in flight. The benchmark's own requests (the relabels it times)
 * share its connections to the apiserver: an unbounded generator that outruns the apiserver (it
 * did at 5,000 nodes on two shared cores) queues thousands of updates in front of them and grows
 * without end. A beat that finds them all busy is skipped and counted.
 */
const HEARTBEATS_IN_FLIGHT = 16;

/** Updates every node's status once per period, spread evenly, until stopped. */
function kubeletHeartbeats(api: Endpoint, nodes: number): { stop(): Promise<void>; sent: () => number; skipped: () => number } {
  let stopped = false;
  let sent = 0;
  let skipped = 0;
  let inFlight = 0;
  const started = performance.now();
  const run = (async () => {
    for (let k = 0; !stopped; k++) {
      const due = started + (k * P.updatePeriodS * 1000) / nodes;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const i = k % nodes;
      // The wrapper's own Node (node 0) is never skipped: its updates are most of what the
      // wrapper reads in a window, and a skipped one would show as a drop in its traffic.
      if (inFlight >= HEARTBEATS_IN_FLIGHT && i !== 0) {
        skipped++;
        continue;
      }
      inFlight++;
      void requestOk(
        api,
        'PATCH',
        `/api/v1/nodes/${nodeName(i)}/status`,
        heartbeatPatch(new Date().toISOString().replace(/\.\d+Z$/, 'Z')),
        'application/strategic-merge-patch+json',
      )
        .then(() => sent++)
        .catch(() => {})
        .finally(() => inFlight--);
    }
  })();
  return {
    sent: () => sent,
    skipped: () => skipped,
    stop: async () => {
      stopped = true;
      await run;
    },
  };
}

interface ModeFigures {
  mode: string;
  nodes: number;
  bytesPerMinute: number;
  /** Objects the wrapper received from the apiserver per minute (list items and watch events). */
  upstreamEventsPerMinute: number | undefined;
  rssMiB: number;
  relabelMedianMs: number;
  reactions: number[];
}

async function measureWrapper(cluster: Cluster, kubeconfig: string, mode: string, nodes: number): Promise<ModeFigures> {
  const api = apiserverEndpoint(cluster);
  const wrapper = await startWrapperUnderTest(cluster, {
    cmd: `${values['wrapper-cmd'] ?? DEFAULT_WRAPPER_CMD} --membership=${mode}`,
    nodeName: nodeName(0),
    kubeconfig,
    name: `wrapper-${mode}-${nodes}`,
  });
  const pid = wrapper.pid!;
  try {
    const ep: Endpoint = { url: wrapper.url };
    const held = new Map<string, Set<string>>();
    const wake: (() => void)[] = [];
    type SliceList = {
      metadata: { resourceVersion: string };
      items: { metadata: { namespace: string; name: string }; endpoints?: { nodeName?: string }[] }[];
    };
    const list = await requestOk<SliceList>(ep, 'GET', SLICES);
    // The watcher's state: the list, then the events after it.
    for (const i of list.items)
      held.set(`${i.metadata.namespace}/${i.metadata.name}`, new Set((i.endpoints ?? []).map((e) => e.nodeName ?? '')));
    let events = 0;
    const watch = new WatchStream(ep, `${SLICES}?watch=1&resourceVersion=${list.metadata.resourceVersion}`, (ev) => {
      events++;
      if (ev.type === 'BOOKMARK') return;
      const key = `${ev.object.metadata.namespace}/${ev.object.metadata.name}`;
      if (ev.type === 'DELETED') held.delete(key);
      else held.set(key, new Set((ev.object.endpoints ?? []).map((e: { nodeName?: string }) => e.nodeName)));
      for (const f of wake.splice(0)) f();
    });
    await watch.opened;
    await new Promise((r) => setTimeout(r, 5_000));
    const before = bytesRead(pid);
    const receivedBefore = await objectsReceived(wrapper.metricsUrl);
    const t = performance.now();
    await new Promise((r) => setTimeout(r, P.windowS * 1000));
    const minutes = (performance.now() - t) / 60_000;
    const bytesPerMinute = (bytesRead(pid) - before) / minutes;
    const receivedAfter = await objectsReceived(wrapper.metricsUrl);
    const upstreamEventsPerMinute =
      receivedBefore === undefined || receivedAfter === undefined ? undefined : (receivedAfter - receivedBefore) / minutes;
    const rssMiB = procStats(pid).rssMiB;

    // A node of the wrapper's unit moves to the next unit and back; its slices must follow.
    const moved = P.units;
    const affected = Array.from({ length: P.services }, (_, s) => s)
      .filter((s) => slice(s, nodes).endpoints.some((e) => e.nodeName === nodeName(moved)))
      .map((s) => `${NS}/svc-${s}-1`);
    const reactions: number[] = [];
    // Start from a settled state: the moved node is in the wrapper's unit (NodeUnits may still be
    // catching up with the previous measurement's relabels).
    const settled = Date.now() + 120_000;
    while (!affected.every((k) => held.get(k)?.has(nodeName(moved)))) {
      if (Date.now() > settled) throw new Error(`${mode}: node ${nodeName(moved)} not in the wrapper's unit after 120 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (let r = 0; r < P.relabels; r++) {
      const away = r % 2 === 0;
      const done = () => affected.every((k) => held.get(k)?.has(nodeName(moved)) === !away);
      const started = performance.now();
      await requestOk(
        api,
        'PATCH',
        `/api/v1/nodes/${nodeName(moved)}`,
        { metadata: { labels: { zone: away ? unitOf(1) : unitOf(0) } } },
        'application/merge-patch+json',
      );
      const deadline = Date.now() + 60_000;
      while (!done()) {
        if (Date.now() > deadline) {
          const served = await requestOk<{ items: { metadata: { name: string }; endpoints?: { nodeName?: string }[] }[] }>(
            ep,
            'GET',
            SLICES,
          );
          const stale = served.items.filter(
            (i) => affected.includes(`${NS}/${i.metadata.name}`) && i.endpoints?.some((e) => e.nodeName === nodeName(moved)) === away,
          );
          throw new Error(
            `${mode}: relabel ${r} not followed in 60 s: the watch ${watch.closed ? 'was closed' : 'is open'}, ${events} events, ${held.size} slices held, ${stale.length} of ${affected.length} affected slices still wrong when listed`,
          );
        }
        await new Promise<void>((res) => {
          wake.push(res);
          setTimeout(res, 50);
        });
      }
      reactions.push(performance.now() - started);
    }
    watch.close();
    return { mode, nodes, bytesPerMinute, upstreamEventsPerMinute, rssMiB, relabelMedianMs: median(reactions), reactions };
  } finally {
    process.kill(pid, 'SIGTERM');
  }
}

async function atScale(nodes: number) {
  const cluster = await startCluster();
  try {
    const api = apiserverEndpoint(cluster);
    await installCrds(cluster);
    const controllerKubeconfig = await installRbac(cluster);
    const wrapperKubeconfig = await installWrapperRbac(cluster);
    await cluster.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } }]);
    const beat = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    let t = performance.now();
    await inParallel(nodes, 16, async (i) => {
      await requestOk(api, 'POST', '/api/v1/nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: nodeName(i), labels: { ...kubeletLabels(i), zone: unitOf(i) } },
      });
      await requestOk(api, 'PATCH', `/api/v1/nodes/${nodeName(i)}/status`, { status: nodeStatus(i, beat) }, 'application/merge-patch+json');
    });
    await inParallel(P.services, 32, async (s) => {
      await requestOk(api, 'POST', `/api/v1/namespaces/${NS}/services`, {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: `svc-${s}`, annotations: { 'servicegroup.io/topology-keys': '["zone"]' } },
        spec: { clusterIP: 'None', ports: [{ port: 80 }] },
      });
      await requestOk(api, 'POST', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, slice(s, nodes));
    });
    console.error(`[bench] ${nodes} nodes, ${P.services} services created in ${((performance.now() - t) / 1000).toFixed(0)} s`);

    t = performance.now();
    // The resync period in plain seconds: this controller's flag parser takes `600s`, not Go's `10m0s`.
    const controller = await startControllerUnderTest(cluster, {
      cmd: values['controller-cmd'] ?? DEFAULT_CONTROLLER_CMD.replace('{resync}', '{resyncSeconds}s'),
      kubeconfig: controllerKubeconfig,
      resyncSeconds: 600,
    });
    for (;;) {
      // A CRD established a moment ago may still answer 429 while its storage initialises.
      const r = await request(api, 'GET', '/apis/servicegroup.io/v1alpha1/nodeunits');
      const l = r.status === 200 ? (JSON.parse(r.body) as { items: { status?: { nodeCount?: number } }[] }) : { items: [] };
      if (l.items.length === P.units && l.items.reduce((n, u) => n + (u.status?.nodeCount ?? 0), 0) === nodes) break;
      if (performance.now() - t > 600_000) throw new Error('the controller did not make the NodeUnits in 10 minutes');
      await new Promise((r) => setTimeout(r, 500));
    }
    const controllerSyncMs = performance.now() - t;

    const heartbeats = kubeletHeartbeats(api, nodes);
    const controllerCpu = await cpuOver(controller.pid!, 10_000);
    const controllerRssMiB = procStats(controller.pid!).rssMiB;
    const wrappers: ModeFigures[] = [];
    for (const mode of P.modes) {
      if (mode === 'nodes' && nodes > P.nodesModeUpTo) continue;
      wrappers.push(await measureWrapper(cluster, wrapperKubeconfig, mode, nodes));
    }
    await heartbeats.stop();
    const statusUpdatesSent = heartbeats.sent();
    const statusUpdatesSkipped = heartbeats.skipped();
    console.error(`[bench] ${nodes} nodes: ${statusUpdatesSent} status updates sent, ${statusUpdatesSkipped} skipped (apiserver behind)`);
    return { nodes, controllerSyncMs, controllerCpu, controllerRssMiB, statusUpdatesSent, statusUpdatesSkipped, wrappers };
  } finally {
    await cluster.stop();
  }
}

async function main() {
  const results: Awaited<ReturnType<typeof atScale>>[] = [];
  const failures: { nodes: number; error: string }[] = [];
  // A step that fails (e.g. an apiserver that cannot keep up at that size) is reported and the
  // others keep their figures.
  for (const n of P.nodeCounts) {
    try {
      const r = await atScale(n);
      results.push(r);
      console.error(`[bench] ${n} nodes: ${JSON.stringify(r)}`);
    } catch (err) {
      console.error(`[bench] ${n} nodes failed: ${(err as Error).message}`);
      failures.push({ nodes: n, error: (err as Error).message });
    }
    // Written after every node count: a long run stopped midway keeps what it measured.
    writeJson(values.out, { benchmark: 'wrapper-nodes', machine: machine(), date: new Date().toISOString(), params: P, results, failures });
  }
  const rows: string[][] = [];
  for (const r of results) {
    for (const w of r.wrappers)
      rows.push([
        String(r.nodes),
        w.mode,
        w.bytesPerMinute < 1048576 ? `${(w.bytesPerMinute / 1024).toFixed(1)} KiB` : `${(w.bytesPerMinute / 1048576).toFixed(2)} MiB`,
        w.upstreamEventsPerMinute === undefined ? 'n/a' : w.upstreamEventsPerMinute.toFixed(0),
        `${w.rssMiB.toFixed(1)} MiB`,
        `${w.relabelMedianMs.toFixed(0)} ms`,
      ]);
    rows.push([
      String(r.nodes),
      'controller',
      '',
      '',
      `${r.controllerRssMiB.toFixed(1)} MiB`,
      `CPU ${(r.controllerCpu * 100).toFixed(1)} % of a core`,
    ]);
  }
  const growth: Record<string, { from: number; to: number; bytesPerMinute: number; rss: number }> = {};
  for (const mode of P.modes) {
    // From the smallest to the largest node count this mode was measured at.
    const measured = results.flatMap((r) => r.wrappers.filter((w) => w.mode === mode));
    if (measured.length < 2) continue;
    const a = measured[0]!;
    const b = measured.at(-1)!;
    growth[mode] = { from: a.nodes, to: b.nodes, bytesPerMinute: b.bytesPerMinute / a.bytesPerMinute - 1, rss: b.rssMiB / a.rssMiB - 1 };
    rows.push([
      `${a.nodes}→${b.nodes}`,
      `${mode} growth`,
      `${(growth[mode].bytesPerMinute * 100).toFixed(0)} %`,
      '',
      `${(growth[mode].rss * 100).toFixed(0)} %`,
      '',
    ]);
  }
  printTable(
    `one wrapper vs node count: ${P.units} NodeUnits, ${P.services} Services, ${P.services * P.eps} endpoints, ${P.images} images per node, each node's status updated every ${P.updatePeriodS} s (${machine()})`,
    ['nodes', 'membership', 'read from apiserver / min', 'upstream objects / min', 'RSS', 'relabel → watcher corrected'],
    rows,
  );
  console.log(
    'targets (nodeunits): bytes/min and RSS grow ≤ 10 % from the smallest to the largest node count; RSS ≤ 100 MB; relabel ≤ 50 ms',
  );
  for (const f of failures) console.log(`${f.nodes} nodes: failed: ${f.error}`);
  writeJson(values.out, {
    benchmark: 'wrapper-nodes',
    machine: machine(),
    date: new Date().toISOString(),
    params: P,
    results,
    growth,
    failures,
  });
  if (failures.length) process.exitCode = 1;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
