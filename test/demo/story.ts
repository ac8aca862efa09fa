// The demo's moving parts and the facts it checks; main.ts only wires flags and the cluster.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { LABEL_GRID, LABEL_UNIT } from '../../controllers/api/v1alpha1.ts';
import { sharedServiceName, unitStatefulSetName } from '../../controllers/render/names.ts';
import { type Cluster, freePort } from '../cluster/cluster.ts';
import type { KubeProxy } from '../cluster/kube-proxy.ts';
import { type Component, waitFor } from '../cluster/processes.ts';
import { installCrds, installRbac } from '../controllers-helpers.ts';
import { CLUSTER_DOMAIN, type RunningCoreDNS, resolveA, startCoreDNS } from '../coredns.ts';
import { unitLocalStorageClass, unitLocalVolume } from '../storage.ts';
import { httpText, installWrapperRbac, type RunningWrapper, startWrapper } from '../wrapper-harness.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const KEY = 'zone';
const UNITS = ['zone-a', 'zone-b'];
const NODES = UNITS.flatMap((u) => [`${u}-node-1`, `${u}-node-2`]);
const SERVICES = ['wordpress-svc', 'mysql-svc'];
const MOVED_NODE = 'zone-a-node-2';
const NAMESPACE = 'default';
/** The template change the demo rolls out site by site: zone-b first, then zone-a, one unit at a time. */
const ROLLOUT_WAVES = [[UNITS[1]!], [UNITS[0]!]];
const ROLLOUT_ANNOTATION = 'demo.servicegroup.io/revision';
/** examples/mysql-statefulset runs in a namespace of its own, beside the wordpress pair's mysql. */
const STATEFUL_NAMESPACE = 'stateful';
const STATEFUL_GRID = 'mysql';
const STATEFUL_SERVICE = sharedServiceName(STATEFUL_GRID);
/** The names each node's CoreDNS is asked: pod 0 by its unit-free name, and the headless Service. */
const POD0_NAME = `${STATEFUL_GRID}-0.${STATEFUL_SERVICE}`;
const DNS_NAMES = [POD0_NAME, STATEFUL_SERVICE];
const fqdn = (name: string) => `${name}.${STATEFUL_NAMESPACE}.svc.${CLUSTER_DOMAIN}`;

interface NodeParts {
  name: string;
  wrapper: RunningWrapper;
  proxy?: KubeProxy;
  /** The node's CoreDNS, reading the cluster through the node's wrapper (examples/edge-dns). */
  dns: RunningCoreDNS;
}

interface Endpoint {
  ip: string;
  node: string;
}

/** What one node sees of one Service, next to what the apiserver holds. */
interface ServiceView {
  service: string;
  apiserver: Endpoint[];
  wrapper: Endpoint[];
  kubeProxy?: string[];
}

export async function startDemo(cluster: Cluster, opts: { kubeProxy: boolean; log: (m: string) => void }) {
  const { log } = opts;
  const kc = cluster.kubeConfig();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);

  for (const node of NODES) await cluster.createNode(node, { [KEY]: node.replace(/-node-\d+$/, '') });
  log(`nodes: ${NODES.join(', ')} in NodeUnits ${UNITS.join(', ')} (label ${KEY})`);

  await installCrds(cluster);
  const controllerKubeconfig = await installRbac(cluster);
  const wrapperKubeconfig = await installWrapperRbac(cluster);
  log('installed the CRDs and the RBAC of examples/install/{controller,wrapper}.yaml');

  const metricsPort = await freePort();
  const controller: Component = cluster.startProcess('servicegroup-controller', process.execPath, [
    join(root, 'controllers/main.ts'),
    `--kubeconfig=${controllerKubeconfig}`,
    `--metrics-bind-address=127.0.0.1:${metricsPort}`,
    `--health-probe-bind-address=127.0.0.1:${metricsPort}`,
  ]);
  await waitFor(
    'the controller to be ready',
    async () => ((await httpText(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200 ? true : undefined),
    {
      components: [controller],
      timeoutMs: 60_000,
    },
  );
  log(`controller running (metrics http://127.0.0.1:${metricsPort}/metrics)`);

  const nodes: NodeParts[] = [];
  for (const name of NODES) {
    const wrapper = await startWrapper(cluster, { nodeName: name, kubeconfig: wrapperKubeconfig });
    nodes.push({ name, wrapper, dns: await startCoreDNS(cluster, { nodeName: name, wrapperURL: wrapper.url }) });
  }
  log(`one application-grid-wrapper per node: ${nodes.map((n) => `${n.name} ${n.wrapper.url}`).join(', ')}`);
  log(`one CoreDNS per node reading through its wrapper (examples/edge-dns): ${nodes.map((n) => `${n.name} ${n.dns.server}`).join(', ')}`);
  if (opts.kubeProxy) {
    for (const n of nodes) n.proxy = await cluster.startKubeProxy({ nodeName: n.name, target: n.wrapper.url });
    log('one kube-proxy per node, each in its own network namespace with --master pointing at its wrapper');
  }

  const grids = await readFile(join(root, 'examples/wordpress/grid.yaml'), 'utf8');
  await cluster.apply(grids);
  log('applied examples/wordpress/grid.yaml (DeploymentGrid + ServiceGrid for wordpress and mysql)');

  // This cluster has no provisioner: one local volume per NodeUnit, through a default StorageClass
  // that binds a claim once its pod is scheduled, so each unit's claim gets its own unit's volume.
  await cluster.apply([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: STATEFUL_NAMESPACE } },
    unitLocalStorageClass({ isDefault: true }),
    ...UNITS.map((u) => unitLocalVolume(KEY, u, 'demo')),
  ]);
  const applied = await cluster.kubectl([
    'apply',
    '--server-side',
    '-n',
    STATEFUL_NAMESPACE,
    '-f',
    join(root, 'examples/mysql-statefulset/grid.yaml'),
  ]);
  if (applied.code !== 0) throw new Error(`kubectl apply examples/mysql-statefulset/grid.yaml: ${applied.stderr}`);
  log(
    `applied examples/mysql-statefulset/grid.yaml in namespace ${STATEFUL_NAMESPACE} (StatefulSetGrid + headless ServiceGrid mysql; one local volume per NodeUnit for the claims)`,
  );

  const unitOf = async () => {
    const list = await core.listNode();
    return new Map(list.items.map((n) => [n.metadata!.name!, n.metadata?.labels?.[KEY] ?? '']));
  };

  const apiserverEndpoints = async (service: string): Promise<Endpoint[]> => {
    const list = await discovery.listNamespacedEndpointSlice({
      namespace: NAMESPACE,
      labelSelector: `kubernetes.io/service-name=${service}`,
    });
    return list.items.flatMap((s) =>
      (s.endpoints ?? []).filter((e) => e.conditions?.ready).flatMap((e) => e.addresses.map((ip) => ({ ip, node: e.nodeName ?? '' }))),
    );
  };

  const wrapperEndpoints = async (w: RunningWrapper, service: string): Promise<Endpoint[]> => {
    const r = await httpText(
      `${w.url}/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${service}`)}`,
    );
    if (r.status !== 200) throw new Error(`wrapper ${w.url}: ${r.status} ${r.body.slice(0, 200)}`);
    const list = JSON.parse(r.body) as k8s.V1EndpointSliceList;
    return list.items.flatMap((s) =>
      (s.endpoints ?? []).filter((e) => e.conditions?.ready).flatMap((e) => e.addresses.map((ip) => ({ ip, node: e.nodeName ?? '' }))),
    );
  };

  const kubeProxyEndpoints = async (p: KubeProxy, service: string): Promise<string[]> => {
    const rules = await p.rules();
    const ips = new Set<string>();
    const re = new RegExp(`-A KUBE-SEP-\\S+ -s (\\S+)/32 -m comment --comment "?${NAMESPACE}/${service}[:"]`, 'g');
    for (const m of rules.matchAll(re)) ips.add(m[1]!);
    return [...ips].sort();
  };

  const snapshot = async () => {
    const units = await unitOf();
    // One read of the apiserver per Service, so every node is compared with the same truth.
    const truth = new Map<string, Endpoint[]>();
    for (const service of SERVICES) truth.set(service, await apiserverEndpoints(service));
    const perNode = new Map<string, ServiceView[]>();
    for (const n of nodes) {
      const views: ServiceView[] = [];
      for (const service of SERVICES) {
        views.push({
          service,
          apiserver: truth.get(service) ?? [],
          wrapper: await wrapperEndpoints(n.wrapper, service),
          kubeProxy: n.proxy ? await kubeProxyEndpoints(n.proxy, service) : undefined,
        });
      }
      perNode.set(n.name, views);
    }
    const deployments = (await apps.listNamespacedDeployment({ namespace: NAMESPACE })).items;
    const pods = (await core.listNamespacedPod({ namespace: NAMESPACE })).items;
    const statefulSets = (await apps.listNamespacedStatefulSet({ namespace: STATEFUL_NAMESPACE })).items;
    const statefulPods = (await core.listNamespacedPod({ namespace: STATEFUL_NAMESPACE })).items;
    const claims = (await core.listNamespacedPersistentVolumeClaim({ namespace: STATEFUL_NAMESPACE })).items;
    // What each node's CoreDNS answers for the StatefulSetGrid's names.
    const dns = new Map<string, Map<string, string[]>>();
    for (const n of nodes) {
      const answers = new Map<string, string[]>();
      for (const name of DNS_NAMES) answers.set(name, await resolveA(n.dns.server, fqdn(name)));
      dns.set(n.name, answers);
    }
    const nodeUnits = (await cluster.kubectl(['get', 'nodeunits'])).stdout.trimEnd();
    const grids = (await cluster.kubectl(['get', 'dg', '-n', NAMESPACE])).stdout.trimEnd();
    const statefulGrids = (await cluster.kubectl(['get', 'stsg', '-n', STATEFUL_NAMESPACE])).stdout.trimEnd();
    return { units, perNode, deployments, pods, statefulSets, statefulPods, claims, dns, nodeUnits, grids, statefulGrids };
  };
  type Snapshot = Awaited<ReturnType<typeof snapshot>>;

  /** The pods of one StatefulSet, by their `<statefulset>-<ordinal>` names. */
  const statefulPodsOf = (s: Snapshot, statefulSet: string) =>
    s.statefulPods
      .filter((p) => p.metadata?.labels?.[LABEL_GRID] === STATEFUL_GRID && new RegExp(`^${statefulSet}-\\d+$`).test(p.metadata?.name ?? ''))
      .sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));

  const render = (s: Snapshot): string => {
    const ipList = (eps: { ip: string; node: string }[]) =>
      eps
        .map((e) => e.ip)
        .sort()
        .join(' ') || '(none)';
    const lines: string[] = [
      '$ kubectl get nodeunits',
      s.nodeUnits,
      '',
      '$ kubectl get dg',
      s.grids,
      '',
      `$ kubectl get stsg -n ${STATEFUL_NAMESPACE}`,
      s.statefulGrids,
      '',
    ];
    const unitValues = [...new Set(s.units.values())].filter(Boolean).sort();
    for (const unit of unitValues) {
      const members = [...s.units].filter(([, u]) => u === unit).map(([n]) => n);
      lines.push(`NodeUnit ${KEY}=${unit}  nodes: ${members.join(', ')}`);
      for (const d of s.deployments.filter((d) => d.metadata?.labels?.[LABEL_UNIT] === unit)) {
        const pods = s.pods.filter((p) =>
          Object.entries(d.spec?.selector?.matchLabels ?? {}).every(([k, v]) => p.metadata?.labels?.[k] === v),
        );
        const where = pods.map((p) => `${p.status?.podIP ?? '-'}@${p.spec?.nodeName ?? '-'}`).join(' ');
        lines.push(`  ${(d.metadata?.name ?? '').padEnd(22)} ${d.status?.readyReplicas ?? 0}/${d.spec?.replicas ?? 0} ready   ${where}`);
      }
      for (const set of s.statefulSets.filter((x) => x.metadata?.labels?.[LABEL_UNIT] === unit)) {
        const name = set.metadata?.name ?? '';
        const where = statefulPodsOf(s, name)
          .map((p) => {
            const claims = (p.spec?.volumes ?? []).flatMap((v) => (v.persistentVolumeClaim ? [v.persistentVolumeClaim.claimName] : []));
            const bound = claims.map((c) => `${c} ${s.claims.find((x) => x.metadata?.name === c)?.status?.phase ?? 'missing'}`);
            return `${p.metadata?.name} ${p.status?.podIP ?? '-'}@${p.spec?.nodeName ?? '-'}${bound.length ? ` (claim ${bound.join(', ')})` : ''}`;
          })
          .join(' ');
        lines.push(
          `  ${`${STATEFUL_NAMESPACE}/${name}`.padEnd(22)} ${set.status?.readyReplicas ?? 0}/${set.spec?.replicas ?? 0} ready   ${where}`,
        );
      }
    }
    lines.push('');
    lines.push(
      `DNS on each node: its own CoreDNS (examples/edge-dns) reading the cluster through that node's wrapper, asked`,
      `${DNS_NAMES.map((n) => `${n}.${STATEFUL_NAMESPACE}`).join(' and ')}: the same names on every node, answered with the node's own`,
      `NodeUnit's mysql (a CoreDNS reading the apiserver would answer ${STATEFUL_SERVICE} with every unit's pods).`,
      `  ${'node'.padEnd(15)} ${'unit'.padEnd(8)} ${POD0_NAME.padEnd(34)} ${STATEFUL_SERVICE}`,
    );
    const podNamed = (ip: string) => s.statefulPods.find((p) => p.status?.podIP === ip)?.metadata?.name ?? '?';
    for (const n of nodes) {
      const answers = s.dns.get(n.name);
      const shown = (name: string) => (answers?.get(name) ?? []).map((ip) => `${ip} (${podNamed(ip)})`).join(' ') || '(none)';
      lines.push(
        `  ${n.name.padEnd(15)} ${(s.units.get(n.name) ?? '').padEnd(8)} ${shown(POD0_NAME).padEnd(34)} ${shown(STATEFUL_SERVICE)}`,
      );
    }
    lines.push('');
    for (const service of SERVICES) {
      const all = s.perNode.get(NODES[0]!)?.find((v) => v.service === service)?.apiserver ?? [];
      lines.push(`${NAMESPACE}/${service}  apiserver holds: ${all.map((e) => `${e.ip}@${e.node}`).join(' ') || '(none)'}`);
      lines.push(
        `  ${'node'.padEnd(15)} ${'unit'.padEnd(8)} ${'wrapper serves'.padEnd(34)} ${opts.kubeProxy ? 'kube-proxy routes to' : ''}`,
      );
      for (const n of nodes) {
        const v = s.perNode.get(n.name)?.find((x) => x.service === service);
        lines.push(
          `  ${n.name.padEnd(15)} ${(s.units.get(n.name) ?? '').padEnd(8)} ${ipList(v?.wrapper ?? []).padEnd(34)} ${v?.kubeProxy ? v.kubeProxy.join(' ') || '(none)' : ''}`,
        );
      }
      lines.push('');
    }
    return lines.join('\n');
  };

  /**
   * The facts the demo stands for, checked on a snapshot: every unit has its Deployments with
   * all pods ready on its own nodes; every node's wrapper (and kube-proxy) holds exactly the
   * endpoints on nodes of its own NodeUnit, while the apiserver holds them all.
   */
  const facts = (s: Snapshot): { fact: string; ok: boolean; detail: string }[] => {
    const out: { fact: string; ok: boolean; detail: string }[] = [];
    const unitValues = [...new Set(s.units.values())].filter(Boolean).sort();
    for (const unit of unitValues) {
      for (const grid of ['wordpress', 'mysql']) {
        const d = s.deployments.find(
          (x) => x.metadata?.labels?.[LABEL_UNIT] === unit && x.metadata?.labels?.['servicegroup.io/grid'] === grid,
        );
        const ready = d ? (d.status?.readyReplicas ?? 0) === (d.spec?.replicas ?? -1) : false;
        out.push({
          fact: `NodeUnit ${unit} runs ${grid} with all replicas ready`,
          ok: ready,
          detail: d ? `${d.metadata?.name} ${d.status?.readyReplicas ?? 0}/${d.spec?.replicas}` : 'no Deployment',
        });
      }
    }
    for (const unit of unitValues) {
      const name = unitStatefulSetName(STATEFUL_GRID, unit);
      const set = s.statefulSets.find((x) => x.metadata?.name === name);
      const pods = statefulPodsOf(s, name);
      // The StatefulSet controller names each pod's claim `<template>-<pod>`.
      const templates = (set?.spec?.volumeClaimTemplates ?? []).map((t) => t.metadata?.name ?? '');
      const claims = pods.flatMap((p) => templates.map((t) => `${t}-${p.metadata?.name}`));
      const bound = claims.filter((c) => s.claims.find((x) => x.metadata?.name === c)?.status?.phase === 'Bound');
      out.push({
        fact: `NodeUnit ${unit} runs StatefulSet ${name} with all replicas ready, each pod's claim bound`,
        ok: !!set && (set.status?.readyReplicas ?? 0) === set.spec?.replicas && claims.length > 0 && bound.length === claims.length,
        detail: set ? `${set.status?.readyReplicas ?? 0}/${set.spec?.replicas} ready, claims bound [${bound.join(' ')}]` : 'no StatefulSet',
      });
    }
    for (const n of nodes) {
      const myUnit = s.units.get(n.name) ?? '';
      // Pod 0 of the node's unit, as long as it runs on a node of that unit (a StatefulSet's pods
      // stay where they run when their node moves to another unit).
      const pod0Name = `${unitStatefulSetName(STATEFUL_GRID, myUnit)}-0`;
      const pod0 = s.statefulPods.find((p) => p.metadata?.name === pod0Name);
      const pod0Here = pod0 && s.units.get(pod0.spec?.nodeName ?? '') === myUnit;
      const answer = s.dns.get(n.name)?.get(POD0_NAME) ?? [];
      out.push({
        fact: `${n.name} (${myUnit}): DNS answers ${POD0_NAME} with its own NodeUnit's pod ${pod0Name}`,
        ok: !!pod0?.status?.podIP && JSON.stringify(answer) === JSON.stringify(pod0Here ? [pod0.status.podIP] : []),
        detail: `answer [${answer.join(' ')}], ${pod0Name} ${pod0?.status?.podIP ?? '-'}@${pod0?.spec?.nodeName ?? '-'}`,
      });
      const ownPods = s.statefulPods
        .filter((p) => p.status?.podIP && s.units.get(p.spec?.nodeName ?? '') === myUnit)
        .map((p) => p.status!.podIP!)
        .sort();
      const sharedAnswer = s.dns.get(n.name)?.get(STATEFUL_SERVICE) ?? [];
      // The unit's StatefulSet pods may all run on the node that moved away (they stay where they
      // run): then the unit has no mysql pod, and the answer is rightly empty.
      const unitPods = s.statefulPods.filter((p) => p.metadata?.name?.startsWith(`${unitStatefulSetName(STATEFUL_GRID, myUnit)}-`));
      const allMovedAway = unitPods.length > 0 && unitPods.every((p) => s.units.get(p.spec?.nodeName ?? '') !== myUnit);
      out.push({
        fact: `${n.name} (${myUnit}): DNS answers ${STATEFUL_SERVICE} with its own NodeUnit's mysql pods only`,
        ok: (ownPods.length > 0 || allMovedAway) && JSON.stringify(sharedAnswer) === JSON.stringify(ownPods),
        detail: `answer [${sharedAnswer.join(' ')}], own unit's pods [${ownPods.join(' ')}]`,
      });
    }
    for (const n of nodes) {
      const myUnit = s.units.get(n.name);
      for (const v of s.perNode.get(n.name) ?? []) {
        const expected = v.apiserver
          .filter((e) => s.units.get(e.node) === myUnit)
          .map((e) => e.ip)
          .sort();
        const served = v.wrapper.map((e) => e.ip).sort();
        out.push({
          fact: `${n.name} (${myUnit}): wrapper serves only ${myUnit}'s endpoints of ${v.service}`,
          ok: expected.length > 0 && JSON.stringify(expected) === JSON.stringify(served) && v.apiserver.length > served.length,
          detail: `serves [${served.join(' ')}], own unit [${expected.join(' ')}], apiserver ${v.apiserver.length}`,
        });
        if (v.kubeProxy) {
          out.push({
            fact: `${n.name} (${myUnit}): kube-proxy routes ${v.service} only to ${myUnit}'s endpoints`,
            ok: JSON.stringify(expected) === JSON.stringify(v.kubeProxy),
            detail: `rules [${v.kubeProxy.join(' ')}]`,
          });
        }
      }
    }
    return out;
  };

  const settle = async (what: string, timeoutMs = 60_000) => {
    try {
      return await waitFor(
        what,
        async () => {
          const s = await snapshot();
          return facts(s).every((f) => f.ok) ? s : undefined;
        },
        { timeoutMs, intervalMs: 500, components: [controller] },
      );
    } catch {
      return snapshot();
    }
  };

  const relabel = async () => {
    const target = UNITS.find((u) => u !== MOVED_NODE.replace(/-node-\d+$/, ''))!;
    await core.patchNode(
      { name: MOVED_NODE, body: { metadata: { labels: { [KEY]: target } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    return target;
  };

  /** Changes wordpress's template with a rollout of one NodeUnit at a time, in ROLLOUT_WAVES order. */
  const rollOut = async () => {
    const patch = {
      spec: {
        rollout: { maxUnavailableUnits: 1, waves: ROLLOUT_WAVES.map((units) => ({ units })) },
        template: { template: { metadata: { annotations: { [ROLLOUT_ANNOTATION]: '2' } } } },
      },
    };
    const r = await cluster.kubectl(['patch', 'dg', 'wordpress', '-n', NAMESPACE, '--type=merge', '-p', JSON.stringify(patch)]);
    if (r.code !== 0) throw new Error(`kubectl patch dg wordpress: ${r.stderr}`);
  };

  /** When each unit's wordpress Deployment first carried the new template, seen by polling while the rollout runs. */
  const watchRollout = async (timeoutMs: number): Promise<Map<string, number>> => {
    const firstSeen = new Map<string, number>();
    const deadline = Date.now() + timeoutMs;
    while (firstSeen.size < UNITS.length && Date.now() < deadline) {
      const list = await apps.listNamespacedDeployment({ namespace: NAMESPACE, labelSelector: 'servicegroup.io/grid=wordpress' });
      for (const d of list.items) {
        const unit = d.metadata?.labels?.[LABEL_UNIT];
        if (unit && !firstSeen.has(unit) && d.spec?.template?.metadata?.annotations?.[ROLLOUT_ANNOTATION] === '2')
          firstSeen.set(unit, Date.now());
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return firstSeen;
  };

  return {
    howToUseKubectl: () => `
ServiceGroup demo is running. Use the cluster yourself:

  export KUBECONFIG=${cluster.adminKubeconfigPath}
  export PATH=${cluster.binDir}:$PATH
  kubectl get dg,sg,deploy,svc -o wide
  kubectl get nodeunits -o wide                   # the sites: members, readiness, grids
  kubectl apply -f examples/echo/grid.yaml        # your own grids
  kubectl -s ${nodes[0]!.wrapper.url} get endpointslices -o yaml   # what ${nodes[0]!.name}'s wrapper serves
  kubectl get stsg,statefulsets,pvc -n ${STATEFUL_NAMESPACE} -o wide   # the mysql StatefulSet per NodeUnit and its claims
  dig @${nodes[0]!.dns.server.split(':')[0]} -p ${nodes[0]!.dns.server.split(':')[1]} ${fqdn(POD0_NAME)} +short   # ${nodes[0]!.name}'s DNS: its unit's mysql pod 0

Component logs: ${cluster.logDir}. Ctrl-C stops everything.
`,

    /** Runs the story once, printing each fact; resolves to the number of failed facts. */
    async runStory(): Promise<number> {
      let failed = 0;
      const report = (title: string, s: Snapshot) => {
        console.log(`\n== ${title}\n${render(s)}`);
        for (const f of facts(s)) {
          console.log(`${f.ok ? 'ok  ' : 'FAIL'} ${f.fact}  (${f.detail})`);
          if (!f.ok) failed++;
        }
      };
      // The first settle includes binding each unit's claim and starting its mysql StatefulSet.
      report('grids applied', await settle('every NodeUnit running and every node isolated', 180_000));
      const target = await relabel();
      log(`moved ${MOVED_NODE} to NodeUnit ${target}`);
      const after = await settle(`the view to follow ${MOVED_NODE} into ${target}`);
      report(`after moving ${MOVED_NODE} to ${KEY}=${target}`, after);
      const moved = after.units.get(MOVED_NODE) === target;
      console.log(`${moved ? 'ok  ' : 'FAIL'} ${MOVED_NODE} is in NodeUnit ${target}`);
      if (!moved) failed++;

      const seen = watchRollout(120_000);
      await rollOut();
      log(`rolling out a wordpress template change, one NodeUnit at a time: ${ROLLOUT_WAVES.map((w) => w.join(',')).join(' then ')}`);
      const firstSeen = await seen;
      const rolled = await settle('the rollout to reach every NodeUnit');
      report('after rolling out wordpress wave by wave', rolled);
      const order = [...firstSeen].sort((a, b) => a[1] - b[1]).map(([u]) => u);
      const inOrder = JSON.stringify(order) === JSON.stringify(ROLLOUT_WAVES.flat());
      console.log(
        `${inOrder ? 'ok  ' : 'FAIL'} the new wordpress template reached the NodeUnits wave by wave  (order ${order.join(' then ') || '(none)'})`,
      );
      if (!inOrder) failed++;
      console.log(`\n${failed === 0 ? 'all facts hold' : `${failed} fact(s) failed`}`);
      return failed;
    },

    /**
     * Refreshes the view every 2 s; relabels one node after `relabelAfterMs` and rolls a wordpress
     * template change out wave by wave as long again after that. Never resolves.
     */
    async live(relabelAfterMs: number): Promise<never> {
      const started = Date.now();
      let moved = '';
      let rolled = false;
      for (;;) {
        if (!moved && Date.now() - started > relabelAfterMs) {
          moved = await relabel();
        }
        if (moved && !rolled && Date.now() - started > 2 * relabelAfterMs) {
          await rollOut();
          rolled = true;
        }
        const s = await snapshot().catch((err: Error) => err);
        const body = s instanceof Error ? `(refresh failed: ${s.message})` : render(s);
        const note = rolled
          ? `rolling a wordpress template change out one NodeUnit at a time (${ROLLOUT_WAVES.map((w) => w.join(',')).join(' then ')}): see ROLLOUT`
          : moved
            ? `moved ${MOVED_NODE} to ${KEY}=${moved}: its wrapper, kube-proxy and DNS now hold ${moved}'s endpoints`
            : `in ${Math.max(0, Math.ceil((relabelAfterMs - (Date.now() - started)) / 1000))} s the demo moves ${MOVED_NODE} to the other NodeUnit`;
        process.stdout.write(
          `\x1b[2J\x1b[H${new Date().toISOString()}  ${note}\n\n${body}\n(Ctrl-C stops; kubectl usage printed above the view: scroll up)\n`,
        );
        await new Promise((r) => setTimeout(r, 2000));
      }
    },

    async stop() {
      await Promise.all(nodes.map((n) => n.proxy?.stop()));
      await Promise.all(nodes.map((n) => n.dns.stop()));
      await Promise.all(nodes.map((n) => n.wrapper.stop()));
      await controller.stop();
    },
  };
}
