// Per-NodeUnit DNS: a real CoreDNS per simulated node, its `kubernetes` plugin reading from that
// node's wrapper (as examples/edge-dns installs it), queried with a real DNS client. Two NodeUnits
// (zone a and b), a ServiceGrid whose shared Service is headless and a StatefulSetGrid naming it as
// its serviceName, both reconciled by the servicegroup-controller; kube-controller-manager runs the
// StatefulSets, kube-scheduler places their pods and kwok runs them.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ANNOTATION_TOPOLOGY_KEYS } from '../controllers/api/v1alpha1.ts';
import { sharedServiceName, unitStatefulSetName } from '../controllers/render/names.ts';
import { freePort, useCluster } from './cluster/cluster.ts';
import { installCrds, installRbac, root, until } from './controllers-helpers.ts';
import { CLUSTER_DOMAIN, type RunningCoreDNS, resolveA, startCoreDNS } from './coredns.ts';
import { installWrapperRbac, type RunningWrapper, startWrapper } from './wrapper-harness.ts';

const cluster = useCluster({ controllerManager: true, scheduler: true, kwok: true });
const ns = 'dns';
const GRID = 'db';
const SHARED = sharedServiceName(GRID);
const REPLICAS = 2;
// Unit b has two nodes, so it keeps existing (and its StatefulSet keeps running) when the node
// running its pod 0 is moved to unit a.
const NODES = { na1: 'a', nb1: 'b', nb2: 'b' } as const;
type NodeName = keyof typeof NODES;

const fqdn = (name: string) => `${name}.${ns}.svc.${CLUSTER_DOMAIN}`;

interface PodPlace {
  ip: string;
  node: string;
}

describe('per-NodeUnit DNS through the wrapper', () => {
  const dns = new Map<NodeName, RunningCoreDNS>();
  const wrappers: RunningWrapper[] = [];
  let webClusterIP = '';

  /** Pods of the grid by name, with IP and node, once all are running with an IP. */
  async function gridPods(): Promise<Map<string, PodPlace>> {
    const list = JSON.parse(await cluster().rawGet(`/api/v1/namespaces/${ns}/pods?labelSelector=app%3D${GRID}`)) as {
      items: { metadata: { name: string }; spec: { nodeName?: string }; status: { podIP?: string; phase?: string } }[];
    };
    return new Map(list.items.map((p) => [p.metadata.name, { ip: p.status.podIP ?? '', node: p.spec.nodeName ?? '' }]));
  }

  /** Waits until `node`'s CoreDNS answers `name` with exactly `expected`; returns how long it took. */
  async function answers(node: NodeName, name: string, expected: string[]): Promise<number> {
    const started = Date.now();
    // A set of addresses: an A answer holds each address once, and two pods can report the same IP.
    const want = [...new Set(expected)].sort();
    let last: string[] = [];
    await until(
      `${node} answers ${name} with ${JSON.stringify(want)}`,
      async () => {
        last = await resolveA(dns.get(node)!.server, fqdn(name));
        return JSON.stringify(last) === JSON.stringify(want);
      },
      60_000,
      async () => `last answer ${JSON.stringify(last)}; CoreDNS log ${dns.get(node)!.logFile}`,
    );
    return Date.now() - started;
  }

  const ipsOn = (pods: Map<string, PodPlace>, zone: string, labels: Record<string, string>) =>
    [...pods.values()].filter((p) => labels[p.node] === zone).map((p) => p.ip);

  before(
    async () => {
      const c = cluster();
      await installCrds(c);
      const controllerKubeconfig = await installRbac(c);
      const wrapperKubeconfig = await installWrapperRbac(c);
      for (const [name, zone] of Object.entries(NODES)) await c.createNode(name, { zone });
      await c.apply([
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
        {
          apiVersion: 'servicegroup.io/v1alpha1',
          kind: 'ServiceGrid',
          metadata: { name: GRID, namespace: ns },
          spec: { gridUniqKey: 'zone', template: { clusterIP: 'None', selector: { app: GRID }, ports: [{ name: 'mysql', port: 3306 }] } },
        },
        // Unmarked headless Service over the same pods: every unit's endpoints, on every node.
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'plain', namespace: ns },
          spec: { clusterIP: 'None', selector: { app: GRID }, ports: [{ port: 3306 }] },
        },
        // Marked ClusterIP Service: DNS answers its virtual IP, which the unit rule does not touch.
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'web', namespace: ns, annotations: { [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' } },
          spec: { selector: { app: GRID }, ports: [{ port: 80, targetPort: 3306 }] },
        },
        // One StatefulSet `db-<unit>` per unit; its pods are published under the shared Service.
        {
          apiVersion: 'servicegroup.io/v1alpha1',
          kind: 'StatefulSetGrid',
          metadata: { name: GRID, namespace: ns },
          spec: {
            gridUniqKey: 'zone',
            template: {
              replicas: REPLICAS,
              serviceName: SHARED,
              podManagementPolicy: 'Parallel',
              selector: { matchLabels: { app: GRID } },
              template: {
                metadata: { labels: { app: GRID } },
                spec: { containers: [{ name: 'db', image: 'db:1', ports: [{ containerPort: 3306 }] }] },
              },
            },
          },
        },
      ]);
      c.startProcess('servicegroup-controller', process.execPath, [
        join(root, 'controllers/main.ts'),
        `--kubeconfig=${controllerKubeconfig}`,
        `--metrics-bind-address=127.0.0.1:${await freePort()}`,
        '--health-probe-bind-address=0',
        '--leader-elect=false',
      ]);
      for (const node of Object.keys(NODES) as NodeName[]) {
        // As examples/install runs it: who is in which unit, from the NodeUnits the controller keeps.
        const wrapper = await startWrapper(c, { nodeName: node, kubeconfig: wrapperKubeconfig, args: ['--membership=nodeunits'] });
        wrappers.push(wrapper);
        dns.set(node, await startCoreDNS(c, { nodeName: node, wrapperURL: wrapper.url }));
      }
      const clusterIP = async (name: string) =>
        (JSON.parse(await c.rawGet(`/api/v1/namespaces/${ns}/services/${name}`)) as { spec: { clusterIP: string } }).spec.clusterIP;
      await until(`the ServiceGrid's shared Service ${SHARED}`, async () => (await clusterIP(SHARED).catch(() => '')) === 'None', 60_000);
      webClusterIP = await clusterIP('web');
      await until(
        `${2 * REPLICAS} pods with an IP`,
        async () => {
          const pods = await gridPods();
          return pods.size === 2 * REPLICAS && [...pods.values()].every((p) => p.ip && p.node);
        },
        120_000,
      );
    },
    { timeout: 900_000 },
  );

  after(async () => {
    for (const d of dns.values()) await d.stop();
    for (const w of wrappers) await w.stop();
  });

  test('examples/edge-dns (the Corefile these CoreDNS run, the DaemonSet) is accepted by the apiserver', async () => {
    const r = await cluster().kubectl(['apply', '--server-side', '--dry-run=server', '-k', join(root, 'examples/edge-dns')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^configmap\/edge-dns-\w+ serverside-applied/m);
    assert.match(r.stdout, /^daemonset\.apps\/edge-dns serverside-applied/m);
  });

  test("a ServiceGrid's headless shared Service: each node gets only its own unit's pod IPs", async () => {
    const pods = await gridPods();
    const labels: Record<string, string> = { ...NODES };
    // Upstream, the shared Service's slices hold every unit's pods, with their hostnames (what a
    // CoreDNS reading the apiserver would answer): the narrowing is the wrapper's.
    await until(
      'upstream slices of the shared Service list every pod with its hostname',
      async () => {
        const slices = JSON.parse(
          await cluster().rawGet(
            `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D${SHARED}`,
          ),
        ) as { items: { endpoints?: { hostname?: string }[] }[] };
        const hostnames = slices.items.flatMap((s) => s.endpoints ?? []).map((e) => e.hostname);
        return JSON.stringify(hostnames.sort()) === JSON.stringify([...pods.keys()].sort());
      },
      60_000,
    );
    for (const [node, zone] of Object.entries(NODES) as [NodeName, string][]) {
      const own = ipsOn(pods, zone, labels);
      assert.equal(own.length, REPLICAS, `pods of unit ${zone}`);
      await answers(node, SHARED, own);
    }
  });

  test("StatefulSet pod names: <grid>-<i>.<service> is the own unit's pod i on every node", async () => {
    const pods = await gridPods();
    for (const [node, zone] of Object.entries(NODES) as [NodeName, string][]) {
      for (let i = 0; i < REPLICAS; i++) {
        const pod = pods.get(`${unitStatefulSetName(GRID, zone)}-${i}`);
        assert.ok(pod, `pod ${i} of unit ${zone}`);
        await answers(node, `${GRID}-${i}.${SHARED}`, [pod.ip]);
      }
      // The other unit's pods are not in this node's view under any name.
      const other = zone === 'a' ? 'b' : 'a';
      assert.deepEqual(await resolveA(dns.get(node)!.server, fqdn(`${unitStatefulSetName(GRID, other)}-0.${SHARED}`)), []);
    }
  });

  test('unmarked headless and ClusterIP Services: answers unchanged', async () => {
    const all = [...(await gridPods()).values()].map((p) => p.ip);
    for (const node of Object.keys(NODES) as NodeName[]) {
      await answers(node, 'plain', all);
      assert.deepEqual(await resolveA(dns.get(node)!.server, fqdn('web')), [webClusterIP]);
      // A per-unit Service of the ServiceGrid is headless and unmarked: its own unit's pods, from any node.
      const perUnit = JSON.parse(await cluster().rawGet(`/api/v1/namespaces/${ns}/services?labelSelector=servicegroup.io%2Funit%3Da`)) as {
        items: { metadata: { name: string } }[];
      };
      assert.equal(perUnit.items.length, 1);
      await answers(node, perUnit.items[0]!.metadata.name, ipsOn(await gridPods(), 'a', { ...NODES }));
    }
  });

  test('a node relabelled into the other unit: its answers follow within seconds', async (t) => {
    const pods = await gridPods();
    const podA0 = pods.get(`${unitStatefulSetName(GRID, 'a')}-0`)!;
    const podB0 = pods.get(`${unitStatefulSetName(GRID, 'b')}-0`)!;
    // The node running unit b's pod 0 moves to unit a; the other node of unit b keeps unit b alive.
    const moved = podB0.node as NodeName;
    assert.ok(moved in NODES && NODES[moved] === 'b', `pod 0 of unit b runs on ${moved}`);
    await cluster().kubectl(['label', 'node', moved, 'zone=a', '--overwrite']);
    const labels: Record<string, string> = { ...NODES, [moved]: 'a' };
    // The moved node is now in unit a with na1: it sees unit a's pods and the unit-b pods running on
    // itself (a StatefulSet's pods stay where they run). Pod 0 of unit a (on na1) is the one
    // `db-0` names; the pods of StatefulSet db-b keep their full names.
    const shared = await answers(moved, SHARED, ipsOn(pods, 'a', labels));
    const pod0 = await answers(moved, `${GRID}-0.${SHARED}`, [podA0.ip]);
    t.diagnostic(`${moved} answered the new unit's IPs ${shared} ms after the relabel, and the new pod 0 ${shared + pod0} ms after`);
    assert.deepEqual(await resolveA(dns.get(moved)!.server, fqdn(`${unitStatefulSetName(GRID, 'b')}-0.${SHARED}`)), [podB0.ip]);
    // na1 did not move; it now also sees the pods running on the node that joined its unit.
    await answers('na1', SHARED, ipsOn(pods, 'a', labels));
    await answers('na1', `${GRID}-0.${SHARED}`, [podA0.ip]);
  });
});
