// Every example is applied to the real cluster, with the real controller, so none rots.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { ANNOTATION_TOPOLOGY_KEYS } from '../controllers/api/v1alpha1.ts';
import { freePort, useCluster } from './cluster/cluster.ts';
import { waitFor } from './cluster/processes.ts';
import { installCrds, installRbac } from './controllers-helpers.ts';
import { httpText, installWrapperRbac, startWrapper } from './wrapper-harness.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);
const cluster = useCluster({ controllerManager: true, kwok: true });

describe('examples/', () => {
  let apps: k8s.AppsV1Api;
  let core: k8s.CoreV1Api;

  before(async () => {
    const c = cluster();
    for (const unit of ['zone-a', 'zone-b', 'zone-c']) {
      await c.createNode(`${unit}-1`, { zone: unit, 'topology.kubernetes.io/region': unit === 'zone-c' ? 'south' : 'north' });
    }
    await installCrds(c);
    const kubeconfig = await installRbac(c);
    const port = await freePort();
    const controller = c.startProcess('controller', process.execPath, [
      join(root, 'controllers/main.ts'),
      `--kubeconfig=${kubeconfig}`,
      `--metrics-bind-address=127.0.0.1:${port}`,
      `--health-probe-bind-address=127.0.0.1:${port}`,
      '--leader-elect=false',
    ]);
    await waitFor('controller ready', async () => ((await httpText(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined), {
      components: [controller],
    });
    apps = c.kubeConfig().makeApiClient(k8s.AppsV1Api);
    core = c.kubeConfig().makeApiClient(k8s.CoreV1Api);
  });

  const applyExample = async (file: string, namespace: string) => {
    await cluster().apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } }]);
    const r = await cluster().kubectl(['apply', '--server-side', '-n', namespace, '-f', join(root, 'examples', file)]);
    assert.equal(r.code, 0, r.stderr);
  };
  const deployment = (namespace: string, name: string) =>
    waitFor(`Deployment ${namespace}/${name}`, async () => apps.readNamespacedDeployment({ namespace, name }).catch(() => undefined));
  const service = (namespace: string, name: string) =>
    waitFor(`Service ${namespace}/${name}`, async () => core.readNamespacedService({ namespace, name }).catch(() => undefined));

  test('echo/grid.yaml: a Deployment per NodeUnit, the shared Service and headless per-unit Services', async () => {
    await applyExample('echo/grid.yaml', 'ex-echo');
    for (const unit of ['zone-a', 'zone-b', 'zone-c']) {
      const d = await deployment('ex-echo', `echo-${unit}`);
      assert.equal(d.spec?.template.spec?.nodeSelector?.zone, unit);
      const s = await service('ex-echo', `echo-svc-${unit}`);
      assert.equal(s.spec?.clusterIP, 'None');
    }
    const shared = await service('ex-echo', 'echo-svc');
    assert.deepEqual(JSON.parse(shared.metadata?.annotations?.[ANNOTATION_TOPOLOGY_KEYS] ?? 'null'), ['zone']);
    // The Degraded column is part of the default `kubectl get` output, not only of -o wide.
    const get = await cluster().kubectl(['get', 'dg,sg', '-n', 'ex-echo']);
    assert.equal(get.code, 0, get.stderr);
    for (const header of get.stdout.split('\n').filter((l) => l.startsWith('NAME'))) assert.match(header, /\bDEGRADED\b/);
  });

  test('wordpress/grid.yaml: wordpress and mysql in every NodeUnit', async () => {
    await applyExample('wordpress/grid.yaml', 'ex-wordpress');
    for (const unit of ['zone-a', 'zone-b', 'zone-c']) {
      for (const app of ['wordpress', 'mysql']) await deployment('ex-wordpress', `${app}-${unit}`);
    }
    await service('ex-wordpress', 'mysql-svc');
    await service('ex-wordpress', 'wordpress-svc');
  });

  test('mysql-statefulset/grid.yaml: a mysql StatefulSet per NodeUnit with its claim template, behind the headless shared Service', async () => {
    await applyExample('mysql-statefulset/grid.yaml', 'ex-mysql-statefulset');
    for (const unit of ['zone-a', 'zone-b', 'zone-c']) {
      const set = await waitFor(`StatefulSet mysql-${unit}`, async () =>
        apps.readNamespacedStatefulSet({ namespace: 'ex-mysql-statefulset', name: `mysql-${unit}` }).catch(() => undefined),
      );
      assert.equal(set.spec?.serviceName, 'mysql-svc');
      assert.equal(set.spec?.template.spec?.nodeSelector?.zone, unit);
      assert.deepEqual(
        set.spec?.volumeClaimTemplates?.map((c) => [c.metadata?.name, c.spec?.resources?.requests?.storage]),
        [['data', '1Gi']],
      );
      assert.equal(set.spec?.persistentVolumeClaimRetentionPolicy?.whenDeleted, 'Retain');
    }
    const shared = await service('ex-mysql-statefulset', 'mysql-svc');
    assert.equal(shared.spec?.clusterIP, 'None');
    assert.deepEqual(JSON.parse(shared.metadata?.annotations?.[ANNOTATION_TOPOLOGY_KEYS] ?? 'null'), ['zone']);
  });

  test('canary.yaml: zone-b runs the canary template, the others the default', async () => {
    await applyExample('canary.yaml', 'ex-canary');
    const image = async (unit: string) => (await deployment('ex-canary', `shop-${unit}`)).spec?.template.spec?.containers[0]?.image;
    assert.equal(await image('zone-b'), 'example/shop:1.5.0-rc.1');
    assert.equal(await image('zone-a'), 'example/shop:1.4.0');
    assert.equal(await image('zone-c'), 'example/shop:1.4.0');
  });

  test('overrides.yaml: replicas for zone-a, a JSON patch for zone-b and zone-c', async () => {
    await applyExample('overrides.yaml', 'ex-overrides');
    const a = await deployment('ex-overrides', 'cache-zone-a');
    assert.equal(a.spec?.replicas, 5);
    assert.equal(a.spec?.template.spec?.containers[0]?.resources?.limits?.memory, '512Mi');
    for (const unit of ['zone-b', 'zone-c']) {
      const d = await deployment('ex-overrides', `cache-${unit}`);
      assert.equal(d.spec?.replicas, 2);
      assert.equal(d.spec?.template.spec?.containers[0]?.resources?.limits?.memory, '128Mi');
    }
  });

  test('topology-fallback.yaml: ordered topology keys and ClusterIP per-unit Services', async () => {
    await applyExample('topology-fallback.yaml', 'ex-fallback');
    const shared = await service('ex-fallback', 'api-svc');
    assert.deepEqual(JSON.parse(shared.metadata?.annotations?.[ANNOTATION_TOPOLOGY_KEYS] ?? 'null'), [
      'zone',
      'topology.kubernetes.io/region',
      '*',
    ]);
    const unit = await service('ex-fallback', 'api-svc-zone-a');
    assert.notEqual(unit.spec?.clusterIP, 'None');
  });

  test('plain-service-topology.yaml and the kube-proxy example: a real kube-proxy with the example config routes only to its NodeUnit', async () => {
    const c = cluster();
    await applyExample('plain-service-topology.yaml', 'ex-plain');
    await c.apply([
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'metrics-gateway-1', namespace: 'ex-plain', labels: { 'kubernetes.io/service-name': 'metrics-gateway' } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 9090, protocol: 'TCP' }],
        endpoints: [
          { addresses: ['10.250.0.1'], nodeName: 'zone-a-1', conditions: { ready: true } },
          { addresses: ['10.250.0.2'], nodeName: 'zone-b-1', conditions: { ready: true } },
        ],
      },
    ]);
    const wrapper = await startWrapper(c, { nodeName: 'zone-a-1', kubeconfig: await installWrapperRbac(c) });
    try {
      const config = k8s.loadYaml(await readFile(join(root, 'examples/kube-proxy/kube-proxy-config.yaml'), 'utf8')) as Record<
        string,
        unknown
      >;
      const proxy = await c.startKubeProxy({ nodeName: 'zone-a-1', target: wrapper.url, config });
      const rules = await waitFor('kube-proxy rules for ex-plain/metrics-gateway', async () => {
        const text = await proxy.rules();
        return text.includes('-s 10.250.0.1/32') ? text : undefined;
      });
      assert.doesNotMatch(rules, /10\.250\.0\.2/);
    } finally {
      await wrapper.stop();
    }
  });

  test('install/: `kubectl apply --server-side -k examples/install` installs CRDs, namespace, both programs and their RBAC', async () => {
    const c = cluster();
    const dry = await c.kubectl(['apply', '--server-side', '--dry-run=server', '-k', join(root, 'examples/install')]);
    assert.equal(dry.code, 0, dry.stderr);
    const r = await c.kubectl(['apply', '--server-side', '--force-conflicts', '-k', join(root, 'examples/install')]);
    assert.equal(r.code, 0, r.stderr);
    for (const line of [
      'customresourcedefinition.apiextensions.k8s.io/deploymentgrids.servicegroup.io',
      'customresourcedefinition.apiextensions.k8s.io/servicegrids.servicegroup.io',
      'customresourcedefinition.apiextensions.k8s.io/nodeunits.servicegroup.io',
      'namespace/servicegroup-system',
      'deployment.apps/servicegroup-controller',
      'daemonset.apps/application-grid-wrapper',
    ]) {
      assert.match(r.stdout, new RegExp(`^${line.replaceAll('.', '\\.')} serverside-applied$`, 'm'));
    }
    const apps2 = c.kubeConfig().makeApiClient(k8s.AppsV1Api);
    const d = await apps2.readNamespacedDeployment({ namespace: 'servicegroup-system', name: 'servicegroup-controller' });
    assert.equal(d.spec?.replicas, 2);
    const ds = await apps2.readNamespacedDaemonSet({ namespace: 'servicegroup-system', name: 'application-grid-wrapper' });
    assert.equal(ds.spec?.template.spec?.hostNetwork, true);
    // Both programs come from the one image of the Dockerfile.
    assert.equal(d.spec?.template.spec?.containers[0]?.image, ds.spec?.template.spec?.containers[0]?.image);
    const can = await c.kubectl([
      'auth',
      'can-i',
      'list',
      'secrets',
      '--as=system:serviceaccount:servicegroup-system:application-grid-wrapper',
      '-A',
    ]);
    assert.equal(can.stdout.trim(), 'no');
    // Sized from measured figures, and one controller replica kept through voluntary disruptions.
    for (const container of [d.spec?.template.spec?.containers[0], ds.spec?.template.spec?.containers[0]]) {
      assert.ok(container?.resources?.requests?.memory, `${container?.name}: memory request`);
      assert.ok(container?.resources?.limits?.memory, `${container?.name}: memory limit`);
    }
    const pdb = await c.kubectl([
      'get',
      'pdb',
      '-n',
      'servicegroup-system',
      'servicegroup-controller',
      '-o',
      'jsonpath={.spec.minAvailable}',
    ]);
    assert.equal(pdb.stdout, '1', pdb.stderr);
    // The controller's probes and metrics are on the ports its flags name.
    const args = d.spec?.template.spec?.containers[0]?.args ?? [];
    assert.ok(args.includes('--health-probe-bind-address=:8081') && args.includes('--metrics-bind-address=:8080'), args.join(' '));
  });

  test("static-pod/: the wrapper as a static Pod is the DaemonSet's container with a kubeconfig; its group may read what the wrapper serves and nothing else", async () => {
    const c = cluster();
    type Spec = { containers: k8s.V1Container[]; initContainers?: k8s.V1Container[] };
    const installed = k8s.loadAllYaml(await readFile(join(root, 'examples/install/wrapper.yaml'), 'utf8')) as {
      kind: string;
      spec: { template: { spec: Spec } };
    }[];
    const ds = installed.find((d) => d.kind === 'DaemonSet')!.spec.template.spec;
    const podFile = join(root, 'examples/static-pod/application-grid-wrapper.yaml');
    const pod = (k8s.loadYaml(await readFile(podFile, 'utf8')) as { spec: Spec }).spec;
    const [want, got] = [ds.containers[0]!, pod.containers[0]!];
    for (const field of ['image', 'command', 'livenessProbe', 'readinessProbe', 'resources', 'securityContext'] as const)
      assert.deepEqual(got[field], want[field], field);
    assert.deepEqual(
      got.args?.filter((a) => !a.startsWith('--kubeconfig=')),
      want.args,
    );
    assert.ok(got.args?.includes('--kubeconfig=/etc/application-grid-wrapper/kubeconfig'));
    // The DaemonSet names the control plane through the in-cluster variables; the kubeconfig does here.
    assert.deepEqual(
      got.env,
      want.env?.filter((e) => !e.name.startsWith('KUBERNETES_SERVICE_')),
    );
    assert.deepEqual(pod.initContainers, ds.initContainers);
    const dry = await c.kubectl(['apply', '--dry-run=server', '-f', podFile]);
    assert.equal(dry.code, 0, dry.stderr);

    const rbac = await c.kubectl(['apply', '--server-side', '-f', join(root, 'examples/static-pod/rbac.yaml')]);
    assert.equal(rbac.code, 0, rbac.stderr);
    const canI = async (...args: string[]) =>
      (
        await c.kubectl(['auth', 'can-i', ...args, '--as=wrapper-edge-1', '--as-group=servicegroup:application-grid-wrappers'])
      ).stdout.trim();
    assert.equal(await canI('watch', 'nodeunits.servicegroup.io'), 'yes');
    assert.equal(await canI('list', 'endpointslices.discovery.k8s.io', '-A'), 'yes');
    assert.equal(await canI('list', 'secrets', '-A'), 'no');
    assert.equal(await canI('patch', 'nodes'), 'no');
  });

  test("overlays/control-plane-endpoint: the documented patch sets the wrapper's control-plane endpoint and nothing else", async () => {
    const c = cluster();
    const render = async (dir: string) => {
      const r = await c.kubectl(['kustomize', join(root, dir)]);
      assert.equal(r.code, 0, r.stderr);
      return k8s.loadAllYaml(r.stdout) as { kind: string; metadata: { name: string }; spec?: any }[];
    };
    const base = await render('examples/install');
    const overlay = await render('examples/overlays/control-plane-endpoint');
    const env = (docs: typeof base) =>
      Object.fromEntries(
        (docs.find((d) => d.kind === 'DaemonSet')!.spec.template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [
          e.name,
          e.value,
        ]),
      );
    assert.equal(env(overlay).KUBERNETES_SERVICE_HOST, '10.0.0.10');
    assert.equal(env(overlay).KUBERNETES_SERVICE_PORT, '6443');
    assert.notEqual(env(base).KUBERNETES_SERVICE_HOST, env(overlay).KUBERNETES_SERVICE_HOST);
    assert.deepEqual(
      overlay.map((d) => `${d.kind}/${d.metadata.name}`),
      base.map((d) => `${d.kind}/${d.metadata.name}`),
    );
    const dry = await c.kubectl([
      'apply',
      '--server-side',
      '--dry-run=server',
      '-k',
      join(root, 'examples/overlays/control-plane-endpoint'),
    ]);
    assert.equal(dry.code, 0, dry.stderr);
  });

  test('nodeunits.yaml: declared NodeUnits label their members by name and by selector', async () => {
    const c = cluster();
    for (const n of ['edge-1', 'edge-2']) await c.createNode(n);
    const r = await c.kubectl(['apply', '--server-side', '-f', join(root, 'examples/nodeunits.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    const labelled = (name: string, key: string, value: string) =>
      waitFor(`node ${name} labelled ${key}=${value}`, async () =>
        (await core.readNode({ name })).metadata?.labels?.[key] === value ? true : undefined,
      );
    await labelled('edge-1', 'site', 'shop-17');
    await labelled('edge-2', 'site', 'shop-17');
    await labelled('zone-a-1', 'plant', 'factory-north');
    await labelled('zone-b-1', 'plant', 'factory-north');
    const nu = await waitFor('kubectl get nu shows both', async () => {
      const g = await c.kubectl(['get', 'nu']);
      return /shop-17\s+site\s+shop-17\s+2\s/.test(g.stdout) && /factory-north\s+plant\s+factory-north\s+2\s/.test(g.stdout)
        ? g
        : undefined;
    });
    assert.equal(nu.code, 0);
    assert.equal((await core.readNode({ name: 'zone-c-1' })).metadata?.labels?.plant, undefined, 'region south is not a member');
    const d = await c.kubectl(['delete', '-f', join(root, 'examples/nodeunits.yaml')]);
    assert.equal(d.code, 0, d.stderr);
    await waitFor('members released', async () =>
      (await core.readNode({ name: 'edge-1' })).metadata?.labels?.site === undefined ? true : undefined,
    );
  });

  test('label-nodes.sh puts nodes into NodeUnits with kubectl', async () => {
    const c = cluster();
    for (const n of ['edge-1', 'edge-2', 'edge-3', 'edge-4']) await c.createNode(n);
    const { stdout } = await run('bash', [join(root, 'examples/label-nodes.sh')], {
      env: { ...process.env, KUBECONFIG: c.adminKubeconfigPath, PATH: `${c.binDir}:${process.env.PATH}` },
    });
    assert.match(stdout, /edge-1\s+\S+\s+\S+\s+\S+\s+\S+\s+zone-a/);
    const node = await core.readNode({ name: 'edge-4' });
    assert.equal(node.metadata?.labels?.zone, 'zone-b');
  });
});
