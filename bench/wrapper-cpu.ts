// Wrapper benchmark: CPU per upstream update of the wrapper's own work (view, NodeUnit rule, served
// stores, 10 watchers), in one process and without a cluster, under each set of Node flags given:
// a way to weigh a V8 flag that saves memory against the CPU it costs. Each flag set runs in a
// child process; the median of --runs is printed.
//   --node-flags='--max-semi-space-size=1|--max-semi-space-size=1 --no-opt' --services 5000 --updates 20000
//   --runs 3 --out f.json
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { apiVersionOf } from '../kube/objects.ts';
import { SERVED_RESOURCES } from '../wrapper/resources.ts';
import { RvClock } from '../wrapper/rv-clock.ts';
import { ServedResource } from '../wrapper/served.ts';
import { NodeUnitView, type ServedStores } from '../wrapper/view.ts';
import { machine, wholeNumber, writeJson } from './lib.ts';
import { median, printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    'node-flags': { type: 'string', default: '--max-semi-space-size=1|--max-semi-space-size=1 --no-opt' },
    services: { type: 'string', default: '5000' },
    updates: { type: 'string', default: '20000' },
    runs: { type: 'string', default: '3' },
    child: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const N = {
  services: wholeNumber(values.services!, '--services'),
  updates: wholeNumber(values.updates!, '--updates'),
  runs: wholeNumber(values.runs!, '--runs'),
};
const NODES = 500;
const UNITS = 50;

const slice = (s: number, version: number) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: {
    name: `svc-${s}-1`,
    namespace: 'scale',
    resourceVersion: String(version),
    labels: { 'kubernetes.io/service-name': `svc-${s}` },
  },
  addressType: 'IPv4',
  ports: [{ port: 80, protocol: 'TCP' }],
  endpoints: Array.from({ length: 4 }, (_, k) => ({
    addresses: [`10.${(s >> 8) & 255}.${s & 255}.${(k + version) & 255}`],
    nodeName: `node-${(s * 4 + k) % NODES}`,
    conditions: { ready: true },
  })),
});

/** Milliseconds of CPU per slice update, this process. */
function measure(): number {
  const clock = new RvClock();
  const served = Object.fromEntries(
    SERVED_RESOURCES.map((s) => [s.resource, new ServedResource(s.resource, clock, { kind: s.kind, apiVersion: apiVersionOf(s) })]),
  ) as unknown as ServedStores;
  const view = new NodeUnitView('node-0', served, pino({ level: 'silent' }));
  for (let i = 0; i < NODES; i++) view.upsert('nodes', { metadata: { name: `node-${i}`, labels: { zone: `unit-${i % UNITS}` } } });
  for (let s = 0; s < N.services; s++) {
    view.upsert('services', {
      metadata: { name: `svc-${s}`, namespace: 'scale', annotations: { 'servicegroup.io/topology-keys': '["zone"]' } },
      spec: { clusterIP: 'None', ports: [{ port: 80 }] },
    });
    view.upsert('endpointslices', slice(s, 0));
  }
  let sent = 0;
  const sink = {
    write(b: Buffer) {
      sent += b.length;
      return true;
    },
    end() {},
    writableLength: 0,
    writableEnded: false,
  };
  for (let w = 0; w < 10; w++)
    served.endpointslices.watch(sink, { fromRv: clock.current, initialEventsEnd: false, bookmarks: false, match: undefined });
  // Each update arrives as the reflector delivers it: freshly parsed from its watch line.
  const update = (k: number) => view.upsert('endpointslices', JSON.parse(JSON.stringify(slice(k % N.services, k + 1))));
  for (let k = 0; k < N.updates / 4; k++) update(k);
  const before = process.cpuUsage();
  for (let k = 0; k < N.updates; k++) update(1_000_000 + k);
  const used = process.cpuUsage(before);
  if (sent === 0) throw new Error('no watcher received anything');
  return (used.user + used.system) / 1000 / N.updates;
}

if (values.child) {
  console.log(JSON.stringify({ msPerUpdate: measure() }));
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const self = fileURLToPath(import.meta.url);
  const flagSets = values['node-flags']!.split('|').map((f) => f.trim().split(/\s+/).filter(Boolean));
  const results = flagSets.map((flags) => {
    const runs = Array.from({ length: N.runs }, () => {
      const out = execFileSync(process.execPath, [...flags, self, '--child', '--services', values.services!, '--updates', values.updates!]);
      return (JSON.parse(out.toString()) as { msPerUpdate: number }).msPerUpdate;
    });
    return { flags: flags.join(' '), runs, msPerUpdate: median(runs) };
  });
  printTable(
    `wrapper CPU per slice update: ${N.services} topology-marked Services, ${NODES} nodes, 10 watchers, ${N.updates} updates, median of ${N.runs} (${machine()})`,
    ['node flags', 'CPU per update'],
    results.map((r) => [r.flags || '(none)', `${(r.msPerUpdate * 1000).toFixed(1)} µs`]),
  );
  writeJson(values.out, { benchmark: 'wrapper-cpu', machine: machine(), date: new Date().toISOString(), params: N, results });
}
