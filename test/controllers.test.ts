// DeploymentGrid and ServiceGrid controllers against the real test cluster: the controller runs
// in this process with the ServiceAccount and RBAC of examples/install/controller.yaml.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as yaml from 'js-yaml';
import type { GridController } from '../controllers/reconcile/controller.ts';
import { CRD_FILES, fetchOpenApi, renderCrdYaml } from '../crds/generate.ts';
import { buildCrds } from '../crds/schema.ts';
import type { KubeClient } from '../kube/client.ts';
import { useCluster } from './cluster/cluster.ts';
import { CONTROLLER_USER, getIfExists, type Obj, root, startGridController, until, waitForQuietWrites } from './controllers-helpers.ts';

const cluster = useCluster({ controllerManager: true, scheduler: true, kwok: true });
const ns = 'grids';

let admin: KubeClient;
let controller: GridController;

const DG = (n: string) => `/apis/servicegroup.io/v1alpha1/namespaces/${ns}/deploymentgrids/${n}`;
const SG = (n: string) => `/apis/servicegroup.io/v1alpha1/namespaces/${ns}/servicegrids/${n}`;
const DEPLOY = (n: string) => `/apis/apps/v1/namespaces/${ns}/deployments/${n}`;
const SVC = (n: string) => `/api/v1/namespaces/${ns}/services/${n}`;

const getOrUndefined = (path: string) => getIfExists(admin, path);

async function listDeployments(grid: string): Promise<Obj[]> {
  const l = await admin.get<{ items: Obj[] }>(`/apis/apps/v1/namespaces/${ns}/deployments`, {
    labelSelector: `servicegroup.io/grid=${grid}`,
  });
  return l.items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

function podSpec(image: string) {
  return {
    replicas: 1,
    selector: { matchLabels: { app: 'web' } },
    template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image, ports: [{ containerPort: 8080 }] }] } },
  };
}

function deploymentGrid(name: string, spec: object) {
  return { apiVersion: 'servicegroup.io/v1alpha1', kind: 'DeploymentGrid', metadata: { name, namespace: ns }, spec };
}

async function events(grid: string): Promise<{ reason: string; type: string; note?: string; message?: string }[]> {
  const l = await admin.get<{ items: { reason: string; type: string; note?: string; regarding?: { name: string } }[] }>(
    `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
  );
  return l.items.filter((e) => e.regarding?.name === grid);
}

async function explainGrid(): Promise<string> {
  const r = await cluster().kubectl(['get', 'sg,svc,endpointslices,pods', '-n', ns, '-o', 'yaml']);
  return r.stdout;
}

function cond(obj: Obj, type: string) {
  return (obj.status?.conditions ?? []).find((c: { type: string }) => c.type === type);
}

describe('controllers (in process)', () => {
  before(
    async () => {
      ({ admin, controller } = await startGridController(cluster(), ns, {
        'n-a1': { zone: 'a' },
        'n-a2': { zone: 'a' },
        'n-b': { zone: 'b' },
      }));
    },
    { timeout: 30 * 60_000 },
  );

  after(async () => {
    await controller?.stop();
  });

  describe('CRDs', () => {
    test('the committed CRDs are what crds/generate.ts makes from this apiserver', async () => {
      const docs = await fetchOpenApi(cluster().rawGet);
      const crds = buildCrds(docs as never);
      for (const [i, file] of CRD_FILES.entries()) {
        // Compared as data: a formatter may restyle the committed YAML without changing it.
        const committed = yaml.load(await readFile(join(root, 'crds', file), 'utf8'));
        assert.deepEqual(committed, yaml.load(renderCrdYaml(crds[i]!)), `crds/${file} is stale: run node crds/generate.ts`);
      }
    });

    test('kubectl explain shows the embedded DeploymentSpec and ServiceSpec', async () => {
      // kubectl's discovery may not list a CRD that was established a moment ago.
      const r = await until('kubectl explain dg', async () => {
        const r = await cluster().kubectl(['explain', 'dg.spec.template.template.spec.containers.image']);
        return r.code === 0 && r;
      });
      assert.match(r.stdout, /Container image name/);
      const s = await cluster().kubectl(['explain', 'sg.spec.template.ports']);
      assert.equal(s.code, 0, s.stderr);
      assert.match(s.stdout, /targetPort/);
      const g = await cluster().kubectl(['get', 'servicegroup', '-A']);
      assert.equal(g.code, 0, g.stderr);
    });

    const rejected = async (obj: object, pattern: RegExp) => {
      const r = await cluster().kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(obj) });
      assert.notEqual(r.code, 0, `expected rejection of ${JSON.stringify(obj)}`);
      assert.match(r.stderr, pattern);
    };

    test('invalid grids are rejected at admission with a message that says what is wrong', async () => {
      const typo = podSpec('nginx');
      (typo.template.spec.containers[0] as Record<string, unknown>).imagee = 'x';
      await rejected(
        deploymentGrid('bad-typo', { gridUniqKey: 'zone', template: typo }),
        /\.spec\.template\.template\.spec\.containers\[name="web"\]\.imagee: field not declared in schema/,
      );
      await rejected(
        deploymentGrid('bad-key', { gridUniqKey: 'zone/a/b', template: podSpec('x') }),
        /gridUniqKey zone\/a\/b is not a valid label key/,
      );
      await rejected(
        deploymentGrid('bad-key2', { gridUniqKey: 'x'.repeat(64), template: podSpec('x') }),
        /name part may have at most 63 characters/,
      );
      await rejected(
        deploymentGrid('bad-pool', {
          gridUniqKey: 'zone',
          template: podSpec('x'),
          templatePool: { canary: podSpec('y') },
          templates: { b: 'canery' },
        }),
        /spec\.templates: Invalid value: every templates value must name a templatePool entry/,
      );
      await rejected(
        deploymentGrid('bad-default', { gridUniqKey: 'zone', template: podSpec('x'), defaultTemplateName: 'nope' }),
        /defaultTemplateName nope must be empty, "default" or a templatePool entry/,
      );
      await rejected(
        deploymentGrid('bad-replicas', { gridUniqKey: 'zone', template: { ...podSpec('x'), replicas: 'two' } }),
        /\.spec\.template\.replicas: expected numeric/,
      );
      await rejected(
        deploymentGrid('bad-patch', {
          gridUniqKey: 'zone',
          template: podSpec('x'),
          overrides: [{ units: ['a'], patch: [{ op: 'replace', path: 'x' }] }],
        }),
        /path must be a JSON pointer starting with \//,
      );
      await rejected(
        deploymentGrid('a-grid-name-that-is-far-too-long-for-units', { gridUniqKey: 'zone', template: podSpec('x') }),
        /at most 36 characters/,
      );
      await rejected(
        {
          apiVersion: 'servicegroup.io/v1alpha1',
          kind: 'ServiceGrid',
          metadata: { name: 'bad-fallback', namespace: ns },
          spec: { gridUniqKey: 'zone', template: { ports: [{ port: 80 }] }, topologyFallback: ['*', 'region'] },
        },
        /"\*" may appear once, as the last entry/,
      );
      await rejected(
        {
          apiVersion: 'servicegroup.io/v1alpha1',
          kind: 'ServiceGrid',
          metadata: { name: 'bad-mode', namespace: ns },
          spec: { gridUniqKey: 'zone', template: { ports: [{ port: 80 }] }, unitServices: 'Nodes' },
        },
        /unitServices.*Unsupported value/,
      );
    });
  });

  describe('DeploymentGrid', () => {
    test('one pinned Deployment per unit; pods Ready through kwok; status reports per-unit readiness', async () => {
      await cluster().apply([deploymentGrid('web', { gridUniqKey: 'zone', template: podSpec('nginx:1') })]);
      const ds = await until('web Deployments', async () => {
        const l = await listDeployments('web');
        return l.length === 2 && l;
      });
      const grid = await admin.get<Obj>(DG('web'));
      assert.deepEqual(
        ds.map((d) => d.metadata.name),
        ['web-a', 'web-b'],
      );
      for (const [d, unit] of [
        [ds[0]!, 'a'],
        [ds[1]!, 'b'],
      ] as const) {
        assert.equal(d.metadata.labels!['servicegroup.io/unit'], unit);
        assert.equal(d.metadata.labels!['app.kubernetes.io/managed-by'], 'servicegroup-controller');
        assert.equal(d.spec.template.metadata.labels['servicegroup.io/unit'], unit);
        assert.equal(d.spec.template.spec.nodeSelector.zone, unit);
        assert.equal(d.spec.selector.matchLabels['servicegroup.io/unit'], unit);
        assert.deepEqual(d.metadata.ownerReferences, [
          {
            apiVersion: 'servicegroup.io/v1alpha1',
            kind: 'DeploymentGrid',
            name: 'web',
            uid: grid.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ]);
      }
      const ready = await until(
        'web ready',
        async () => {
          const g = await admin.get<Obj>(DG('web'));
          return g.status?.readyUnits === 2 && cond(g, 'Ready')?.status === 'True' && g;
        },
        90_000,
      );
      assert.equal(ready.status.totalUnits, 2);
      assert.equal(ready.status.observedGeneration, ready.metadata.generation);
      assert.deepEqual(
        ready.status.units.map((u: Obj) => [u.name, u.deployment, u.readyReplicas, u.template]),
        [
          ['a', 'web-a', 1, 'default'],
          ['b', 'web-b', 1, 'default'],
        ],
      );
      assert.equal(cond(ready, 'Degraded')?.status, 'False');
      const pods = await admin.get<{ items: Obj[] }>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: 'servicegroup.io/unit=a' });
      assert.ok(
        pods.items.every((p) => ['n-a1', 'n-a2'].includes(p.spec.nodeName)),
        'unit a pods run on unit a nodes',
      );
      const get = await cluster().kubectl(['get', 'dg', '-n', ns, 'web']);
      // Degraded is part of the default columns, not only of -o wide; Rollout is empty without spec.rollout.
      assert.match(get.stdout, /KEY\s+UNITS\s+READY\s+ROLLOUT\s+DEGRADED\s+AGE/);
      assert.match(get.stdout, /web\s+zone\s+2\s+2\s+AsExpected\s+/);
      // Events are posted at the end of the sync, after the writes a test may already have seen.
      await until('Created event', async () => (await events('web')).some((e) => e.reason === 'Created'));
    });

    test('a new label value makes a new unit; relabelling its last node removes it', async () => {
      await cluster().createNode('n-c', { zone: 'c' });
      await until('web-c created', async () => !!(await getOrUndefined(DEPLOY('web-c'))));
      await cluster().apply([{ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n-c', labels: { zone: 'a' } } }]);
      await until('web-c deleted', async () => !(await getOrUndefined(DEPLOY('web-c'))));
      const g = await until('status without c', async () => {
        const g = await admin.get<Obj>(DG('web'));
        return g.status.totalUnits === 2 && g;
      });
      assert.deepEqual(
        g.status.units.map((u: Obj) => u.name),
        ['a', 'b'],
      );
      await until('Deleted event', async () => (await events('web')).some((e) => e.reason === 'Deleted'));
    });

    test('a template change rolls every unit', async () => {
      await cluster().apply([deploymentGrid('web', { gridUniqKey: 'zone', template: podSpec('nginx:2') })]);
      await until('all units on nginx:2', async () => {
        const l = await listDeployments('web');
        return l.length === 2 && l.every((d) => d.spec.template.spec.containers[0].image === 'nginx:2');
      });
      await until(
        'rolled out and ready',
        async () => {
          const g = await admin.get<Obj>(DG('web'));
          return (
            g.status.observedGeneration === g.metadata.generation &&
            g.status.readyUnits === 2 &&
            g.status.units.every((u: Obj) => u.updatedReplicas === 1) &&
            cond(g, 'Progressing')?.status === 'False'
          );
        },
        90_000,
      );
    });

    test('canary through templatePool in one unit', async () => {
      await cluster().apply([
        deploymentGrid('web', {
          gridUniqKey: 'zone',
          template: podSpec('nginx:2'),
          templatePool: { canary: podSpec('nginx:3-rc') },
          templates: { b: 'canary' },
        }),
      ]);
      await until('b on canary, a unchanged', async () => {
        const l = await listDeployments('web');
        return l[0]?.spec.template.spec.containers[0].image === 'nginx:2' && l[1]?.spec.template.spec.containers[0].image === 'nginx:3-rc';
      });
      await until('status names the canary template', async () => {
        const g = await admin.get<Obj>(DG('web'));
        return g.status.units.find((u: Obj) => u.name === 'b')?.template === 'canary';
      });
    });

    test('a managed field changed by hand is put back; fields of other actors stay', async () => {
      const image = (await admin.get<Obj>(DEPLOY('web-a'))).spec.template.spec.containers[0].image;
      await admin.mergePatch(DEPLOY('web-a'), {
        metadata: { labels: { team: 'blue' } },
        spec: { template: { spec: { containers: [{ name: 'web', image: 'hacked:1' }] } } },
      });
      const back = await until('image restored', async () => {
        const d = await admin.get<Obj>(DEPLOY('web-a'));
        return d.spec.template.spec.containers[0].image === image && d;
      });
      assert.equal(back.metadata.labels!.team, 'blue');
      await controller.waitIdle();
      const settled = await admin.get<Obj>(DEPLOY('web-a'));
      await new Promise((r) => setTimeout(r, 1000));
      const before = (await cluster().writeRequests(CONTROLLER_USER)).filter((w) => w.resource === 'deployments').length;
      controller.resyncAll();
      await controller.waitIdle();
      assert.equal(
        (await cluster().writeRequests(CONTROLLER_USER)).filter((w) => w.resource === 'deployments').length,
        before,
        'no write loop',
      );
      assert.equal((await admin.get<Obj>(DEPLOY('web-a'))).metadata.generation, settled.metadata.generation);
    });

    test('values the apiserver normalises (1000m, 1024Mi): one write per object, none when the Deployments change status or at resync', async () => {
      const spec = podSpec('nginx:1');
      (spec.template.spec.containers[0] as Record<string, unknown>).resources = { requests: { cpu: '1000m', memory: '1024Mi' } };
      await cluster().apply([deploymentGrid('norm', { gridUniqKey: 'zone', template: spec })]);
      // Ready means kube-controller-manager wrote each Deployment's status: versions the
      // controller did not write, whose spec says cpu 1 and memory 1Gi.
      await until('norm ready', async () => (await admin.get<Obj>(DG('norm'))).status?.readyUnits === 2, 90_000);
      const ofNorm = async () =>
        (await cluster().writeRequests(CONTROLLER_USER)).filter((w) => w.resource === 'deployments' && w.name?.startsWith('norm-'));
      await waitForQuietWrites(cluster(), controller);
      assert.deepEqual(
        (await ofNorm()).map((w) => `${w.verb} ${w.name}`).sort(),
        ['create norm-a', 'create norm-b'],
        'the status changes that followed the creates are not taken for drift',
      );
      const stored = await admin.get<Obj>(DEPLOY('norm-a'));
      assert.deepEqual(stored.spec.template.spec.containers[0].resources.requests, { cpu: '1', memory: '1Gi' });
      controller.resyncAll();
      await controller.waitIdle();
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await ofNorm()).length, 2, 'no write at resync');
    });

    test('overrides: replicas and a JSON patch per unit; a failing patch fails only its unit', async () => {
      await cluster().apply([
        deploymentGrid('web', {
          gridUniqKey: 'zone',
          template: podSpec('nginx:2'),
          overrides: [
            { units: ['a'], replicas: 2 },
            { units: ['a'], patch: [{ op: 'add', path: '/template/spec/containers/0/env', value: [{ name: 'UNIT', value: 'a' }] }] },
          ],
        }),
      ]);
      await until('a has 2 replicas and env, b is plain', async () => {
        const [a, b] = await listDeployments('web');
        return (
          a?.spec.replicas === 2 &&
          a.spec.template.spec.containers[0].env?.[0]?.value === 'a' &&
          b?.spec.replicas === 1 &&
          !b.spec.template.spec.containers[0].env &&
          b.spec.template.spec.containers[0].image === 'nginx:2'
        );
      });
      const bBefore = (await listDeployments('web'))[1]!;
      await cluster().apply([
        deploymentGrid('web', {
          gridUniqKey: 'zone',
          template: podSpec('nginx:4'),
          overrides: [{ units: ['b'], patch: [{ op: 'replace', path: '/template/spec/volumes/0/name', value: 'x' }] }],
        }),
      ]);
      const g = await until('b failed with InvalidOverride', async () => {
        const g = await admin.get<Obj>(DG('web'));
        return g.status.observedGeneration === g.metadata.generation && cond(g, 'Degraded')?.status === 'True' && g;
      });
      assert.equal(cond(g, 'Degraded').reason, 'InvalidOverride');
      assert.match(
        cond(g, 'Degraded').message,
        /unit "b": InvalidOverride: overrides\[0\]\.patch\[0\] \(replace \/template\/spec\/volumes\/0\/name\)/,
      );
      assert.match(g.status.units.find((u: Obj) => u.name === 'b').error, /InvalidOverride/);
      await until(
        'a rolled to nginx:4',
        async () => (await listDeployments('web'))[0]?.spec.template.spec.containers[0].image === 'nginx:4',
      );
      const bAfter = (await listDeployments('web'))[1]!;
      assert.equal(
        bAfter.metadata.resourceVersion === bBefore.metadata.resourceVersion || bAfter.spec.template.spec.containers[0].image === 'nginx:2',
        true,
        'unit b is left alone',
      );
      assert.equal(bAfter.spec.template.spec.containers[0].image, 'nginx:2');
      await until('warning event', async () =>
        (await events('web')).some((e) => e.type === 'Warning' && e.reason === 'InvalidOverride' && /unit "b"/.test(e.note ?? '')),
      );
    });

    test('a same-name foreign Deployment is a conflict: Degraded/Conflict, Warning event, object untouched', async () => {
      await cluster().apply([
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: 'conf-a', namespace: ns, labels: { owner: 'someone' } },
          spec: {
            replicas: 0,
            selector: { matchLabels: { app: 'other' } },
            template: { metadata: { labels: { app: 'other' } }, spec: { containers: [{ name: 'o', image: 'other:1' }] } },
          },
        },
      ]);
      const foreign = await admin.get<Obj>(DEPLOY('conf-a'));
      await cluster().apply([deploymentGrid('conf', { gridUniqKey: 'zone', template: { ...podSpec('nginx:1'), replicas: 0 } })]);
      const g = await until('conflict reported', async () => {
        const g = await admin.get<Obj>(DG('conf'));
        return cond(g, 'Degraded')?.reason === 'Conflict' && g;
      });
      assert.match(cond(g, 'Degraded').message, /Deployment grids\/conf-a exists and is not controlled by this grid/);
      assert.ok(await getOrUndefined(DEPLOY('conf-b')), 'the other unit is rendered');
      await until('warning event', async () => (await events('conf')).some((e) => e.type === 'Warning' && e.reason === 'Conflict'));
      await controller.waitIdle();
      const after = await admin.get<Obj>(DEPLOY('conf-a'));
      // kube-controller-manager writes its status; the controller must never have written it.
      assert.deepEqual(after.spec, foreign.spec);
      assert.deepEqual(after.metadata.labels, foreign.metadata.labels);
      assert.equal(after.metadata.ownerReferences, undefined);
      // One create attempt, refused by the apiserver because the name was taken (no GET before a create).
      const touched = (await cluster().writeRequests(CONTROLLER_USER)).filter((w) => w.resource === 'deployments' && w.name === 'conf-a');
      assert.deepEqual(
        touched.map((w) => w.code),
        [409],
      );
      // Deleting the grid leaves the foreign object alone too.
      await admin.request('DELETE', DG('conf'));
      await until('conf-b collected', async () => !(await getOrUndefined(DEPLOY('conf-b'))));
      assert.ok(await getOrUndefined(DEPLOY('conf-a')));
    });

    test('unit values Zone_A, zone_a and 63-character values get distinct valid names; raw value in labels', async () => {
      const long = `Z${'x'.repeat(61)}_`.replace(/_$/, '9');
      const long2 = `Z${'x'.repeat(61)}8`;
      await cluster().createNode('n-z1', { site: 'Zone_A' });
      await cluster().createNode('n-z2', { site: 'zone_a' });
      await cluster().createNode('n-z3', { site: long });
      await cluster().createNode('n-z4', { site: long2 });
      await cluster().apply([deploymentGrid('odd', { gridUniqKey: 'site', template: { ...podSpec('nginx:1'), replicas: 0 } })]);
      const ds = await until('4 deployments', async () => {
        const l = await listDeployments('odd');
        return l.length === 4 && l;
      });
      const units = ds.map((d) => d.metadata.labels!['servicegroup.io/unit']).sort();
      assert.deepEqual(units, [long2, long, 'Zone_A', 'zone_a'].sort());
      for (const d of ds) {
        assert.match(d.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
        assert.ok(d.metadata.name.length <= 47, d.metadata.name);
        assert.equal(d.spec.template.spec.nodeSelector.site, d.metadata.labels!['servicegroup.io/unit']);
      }
      assert.equal(new Set(ds.map((d) => d.metadata.name)).size, 4);
    });

    test('a grid keyed on another label: its units become that label values, and relabels on it are followed', async () => {
      const units = async () => (await listDeployments('rekey')).map((d) => d.metadata.name).join(',');
      await cluster().apply([deploymentGrid('rekey', { gridUniqKey: 'zone', template: podSpec('nginx') })]);
      await until('rekey on zone', async () => (await units()) === 'rekey-a,rekey-b');
      const setRoom = (node: string, room: string | null) =>
        admin.mergePatch(`/api/v1/nodes/${node}`, { metadata: { labels: { room } } }, 'operator');
      await setRoom('n-a1', 'r1');
      await setRoom('n-b', 'r2');
      try {
        await cluster().apply([deploymentGrid('rekey', { gridUniqKey: 'room', template: podSpec('nginx') })]);
        await until('rekey on room', async () => (await units()) === 'rekey-r1,rekey-r2', 60_000, explainGrid);
        await setRoom('n-a2', 'r3');
        await until('a relabel on the new key adds a unit', async () => (await units()) === 'rekey-r1,rekey-r2,rekey-r3');
        await until('status names the new units', async () => {
          const g = await admin.get<Obj>(DG('rekey'));
          return g.status?.units?.map((u: Obj) => u.name).join(',') === 'r1,r2,r3';
        });
      } finally {
        await admin.request('DELETE', DG('rekey'));
        for (const n of ['n-a1', 'n-a2', 'n-b']) await setRoom(n, null);
      }
    });

    test('deleting a grid garbage-collects its Deployments', async () => {
      await admin.request('DELETE', DG('odd'));
      await until('odd deployments collected', async () => (await listDeployments('odd')).length === 0, 90_000);
    });
  });

  describe('ServiceGrid', () => {
    const svcGrid = (spec: object) => ({
      apiVersion: 'servicegroup.io/v1alpha1',
      kind: 'ServiceGrid',
      metadata: { name: 'web', namespace: ns },
      spec,
    });

    test('shared Service with topology annotation and per-unit headless Services with the right selectors', async () => {
      await cluster().apply([
        svcGrid({
          gridUniqKey: 'zone',
          topologyFallback: ['region', '*'],
          template: { type: 'NodePort', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
        }),
      ]);
      const shared = await until('web-svc', () => getOrUndefined(SVC('web-svc')));
      assert.equal(shared.metadata.annotations!['servicegroup.io/topology-keys'], '["zone","region","*"]');
      assert.deepEqual(shared.spec.selector, { app: 'web' });
      assert.ok(shared.spec.clusterIP && shared.spec.clusterIP !== 'None');
      const a = await until('web-svc-a', () => getOrUndefined(SVC('web-svc-a')));
      const b = await until('web-svc-b', () => getOrUndefined(SVC('web-svc-b')));
      for (const [s, unit] of [
        [a, 'a'],
        [b, 'b'],
      ] as const) {
        assert.equal(s.spec.clusterIP, 'None');
        assert.deepEqual(s.spec.selector, { app: 'web', 'servicegroup.io/unit': unit });
        assert.equal(s.metadata.labels!['servicegroup.io/unit'], unit);
        assert.equal(s.metadata.ownerReferences![0].kind, 'ServiceGrid');
      }
      const g = await until(
        'endpoints counted per unit',
        async () => {
          const g = await admin.get<Obj>(SG('web'));
          const units = g.status?.units ?? [];
          return units.length === 2 && units.every((u: Obj) => u.readyEndpoints > 0) && cond(g, 'Ready')?.status === 'True' && g;
        },
        90_000,
        explainGrid,
      );
      assert.equal(g.status.service, 'web-svc');
      assert.deepEqual(
        g.status.units.map((u: Obj) => u.service),
        ['web-svc-a', 'web-svc-b'],
      );
      const get = await cluster().kubectl(['get', 'sg', '-n', ns, 'web']);
      assert.match(get.stdout, /web\s+zone\s+web-svc\s+2\s+2\s+/);
    });

    test('ClusterIP and node ports survive template updates', async () => {
      const before = await admin.get<Obj>(SVC('web-svc'));
      const unitBefore = await admin.get<Obj>(SVC('web-svc-a'));
      await cluster().apply([
        svcGrid({
          gridUniqKey: 'zone',
          template: { type: 'NodePort', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 9090 }] },
        }),
      ]);
      const after = await until('targetPort updated', async () => {
        const s = await admin.get<Obj>(SVC('web-svc'));
        return s.spec.ports[0].targetPort === 9090 && s;
      });
      assert.equal(after.spec.clusterIP, before.spec.clusterIP);
      assert.deepEqual(after.spec.clusterIPs, before.spec.clusterIPs);
      assert.equal(after.spec.ports[0].nodePort, before.spec.ports[0].nodePort);
      assert.equal(after.metadata.annotations!['servicegroup.io/topology-keys'], '["zone"]');
      const unitAfter = await until('unit targetPort updated', async () => {
        const s = await admin.get<Obj>(SVC('web-svc-a'));
        return s.spec.ports[0].targetPort === 9090 && s;
      });
      assert.equal(unitAfter.metadata.uid, unitBefore.metadata.uid);
    });

    test('unitServices ClusterIP recreates unit Services; None removes them', async () => {
      await cluster().apply([
        svcGrid({ gridUniqKey: 'zone', unitServices: 'ClusterIP', template: { selector: { app: 'web' }, ports: [{ port: 80 }] } }),
      ]);
      await until('unit service with a ClusterIP', async () => {
        const s = await getOrUndefined(SVC('web-svc-a'));
        return !!s && s.spec.clusterIP !== 'None';
      });
      await cluster().apply([
        svcGrid({ gridUniqKey: 'zone', unitServices: 'None', template: { selector: { app: 'web' }, ports: [{ port: 80 }] } }),
      ]);
      await until('unit services gone', async () => !(await getOrUndefined(SVC('web-svc-a'))) && !(await getOrUndefined(SVC('web-svc-b'))));
      const g = await until(
        'endpoints counted from the shared Service',
        async () => {
          const g = await admin.get<Obj>(SG('web'));
          return g.status.observedGeneration === g.metadata.generation && g.status.units.every((u: Obj) => u.readyEndpoints > 0) && g;
        },
        60_000,
        explainGrid,
      );
      assert.deepEqual(
        g.status.units.map((u: Obj) => u.service),
        ['', ''],
      );
    });

    test('a foreign Service named <grid>-svc is a conflict and stays untouched', async () => {
      await cluster().apply([
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'other-svc', namespace: ns },
          spec: { selector: { app: 'x' }, ports: [{ port: 81 }] },
        },
      ]);
      const foreign = await admin.get<Obj>(SVC('other-svc'));
      await cluster().apply([
        {
          ...svcGrid({ gridUniqKey: 'zone', template: { selector: { app: 'web' }, ports: [{ port: 80 }] } }),
          metadata: { name: 'other', namespace: ns },
        },
      ]);
      await until('conflict', async () => cond(await admin.get<Obj>(SG('other')), 'Degraded')?.reason === 'Conflict');
      await until('warning event', async () => (await events('other')).some((e) => e.type === 'Warning' && e.reason === 'Conflict'));
      await controller.waitIdle();
      const after = await admin.get<Obj>(SVC('other-svc'));
      assert.equal(after.metadata.resourceVersion, foreign.metadata.resourceVersion);
      assert.deepEqual(
        (await cluster().writeRequests(CONTROLLER_USER))
          .filter((w) => w.resource === 'services' && w.name === 'other-svc')
          .map((w) => w.code),
        [409],
        'one create attempt, refused because the name was taken',
      );
      assert.ok(await getOrUndefined(SVC('other-svc-a')), 'unit Services are still rendered');
    });
  });

  describe('zero writes when nothing changed', () => {
    test('a forced resync of 100 settled grids makes no write request', async () => {
      await cluster().apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'many' } }]);
      const grids: object[] = [];
      for (let i = 0; i < 70; i++) {
        grids.push({
          apiVersion: 'servicegroup.io/v1alpha1',
          kind: 'DeploymentGrid',
          metadata: { name: `d${i}`, namespace: 'many' },
          spec: { gridUniqKey: 'zone', template: { ...podSpec('nginx:1'), replicas: 0 } },
        });
      }
      for (let i = 0; i < 30; i++) {
        grids.push({
          apiVersion: 'servicegroup.io/v1alpha1',
          kind: 'ServiceGrid',
          metadata: { name: `s${i}`, namespace: 'many' },
          spec: { gridUniqKey: 'zone', template: { selector: { app: `s${i}` }, ports: [{ port: 80 }] } },
        });
      }
      await cluster().apply(grids);
      await until(
        '100 grids settled',
        async () => {
          const d = await admin.get<{ items: Obj[] }>('/apis/servicegroup.io/v1alpha1/namespaces/many/deploymentgrids');
          const s = await admin.get<{ items: Obj[] }>('/apis/servicegroup.io/v1alpha1/namespaces/many/servicegrids');
          return (
            d.items.length === 70 &&
            s.items.length === 30 &&
            [...d.items, ...s.items].every((g) => g.status?.observedGeneration === g.metadata.generation && g.status.totalUnits === 2)
          );
        },
        180_000,
      );
      // Settled: kube-controller-manager done with every Deployment's status (it retries conflicts
      // seconds later), the controller idle, and its write count stable.
      await until(
        'Deployments settled',
        async () => {
          const l = await admin.get<{ items: Obj[] }>('/apis/apps/v1/namespaces/many/deployments');
          return (
            l.items.length === 140 &&
            l.items.every(
              (d) =>
                d.status?.observedGeneration === d.metadata.generation &&
                d.status.conditions?.some(
                  (c: { type: string; reason: string }) => c.type === 'Progressing' && c.reason === 'NewReplicaSetAvailable',
                ) &&
                d.status.conditions?.some((c: { type: string }) => c.type === 'Available'),
            )
          );
        },
        180_000,
      );
      const writes = await waitForQuietWrites(cluster(), controller, 180_000);
      const globalBefore = await cluster().writeRequestCount();
      controller.resyncAll();
      const queued = controller.queue.length + controller.queue.inFlight;
      assert.ok(queued >= 100, `queued ${queued}`);
      await controller.waitIdle(120_000);
      await new Promise((r) => setTimeout(r, 1000));
      const after = await cluster().writeRequests(CONTROLLER_USER);
      assert.equal(after.length, writes, `writes during resync: ${JSON.stringify(after.slice(writes))}`);
      const globalAfter = await cluster().writeRequestCount();
      console.error(
        `[zero-writes] controller writes before/after resync: ${writes}/${after.length}; apiserver writes by everyone (kwok/kcm heartbeats included) during it: ${globalAfter - globalBefore}`,
      );
    });
  });
});
