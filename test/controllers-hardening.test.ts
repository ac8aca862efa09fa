// How the grid controllers behave when things go wrong, against the real test cluster: failing
// grids settle with zero writes, conflicts that clear are noticed at once, events are aggregated
// and announced once, overrides naming unknown units, selector changes, pods a relabel left in
// another unit, and a grid watch that delivers late. The controller runs in this process with the
// install manifest's RBAC.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { GridController } from '../controllers/reconcile/controller.ts';
import type { KubeClient } from '../kube/client.ts';
import { useCluster, type WriteRequest } from './cluster/cluster.ts';
import { CONTROLLER_USER, getIfExists, LaggingWatch, type Obj, startGridController, until } from './controllers-helpers.ts';

const cluster = useCluster({ controllerManager: true, scheduler: true, kwok: true });
const ns = 'hard';

let admin: KubeClient;
let controller: GridController;
/** The controller's client; its ServiceGrid watch can be made to lag. */
let client: LaggingWatch;

const DG = (n: string) => `/apis/servicegroup.io/v1alpha1/namespaces/${ns}/deploymentgrids/${n}`;
const DEPLOY = (n: string) => `/apis/apps/v1/namespaces/${ns}/deployments/${n}`;

const getOrUndefined = (path: string) => getIfExists(admin, path);

function podSpec(app: string, replicas = 0) {
  return {
    replicas,
    selector: { matchLabels: { app } },
    template: { metadata: { labels: { app } }, spec: { containers: [{ name: 'c', image: 'img:1' }] } },
  };
}

function deploymentGrid(name: string, spec: object) {
  return { apiVersion: 'servicegroup.io/v1alpha1', kind: 'DeploymentGrid', metadata: { name, namespace: ns }, spec };
}

interface Event {
  reason: string;
  type: string;
  note?: string;
}

async function events(grid: string): Promise<Event[]> {
  const l = await admin.get<{ items: (Event & { regarding?: { name: string } })[] }>(`/apis/events.k8s.io/v1/namespaces/${ns}/events`);
  return l.items.filter((e) => e.regarding?.name === grid);
}

function cond(obj: Obj, type: string) {
  return (obj.status?.conditions ?? []).find((c: { type: string }) => c.type === type);
}

async function controllerWrites(filter: (w: WriteRequest) => boolean = () => true) {
  return (await cluster().writeRequests(CONTROLLER_USER)).filter(filter);
}

/** Forced resyncs with nothing changed: returns the controller's write requests made during them. */
async function resyncs(times: number) {
  await controller.waitIdle();
  const before = (await controllerWrites()).length;
  for (let i = 0; i < times; i++) {
    controller.resyncAll();
    await controller.waitIdle();
  }
  // The audit log is written asynchronously by the apiserver.
  await new Promise((r) => setTimeout(r, 1000));
  return (await controllerWrites()).slice(before);
}

describe('controllers when things go wrong (in process)', () => {
  before(
    async () => {
      ({ admin, controller } = await startGridController(
        cluster(),
        ns,
        { 'h-a': { zone: 'a' }, 'h-b': { zone: 'b' } },
        (c) => (client = new LaggingWatch(c, 'servicegrids')),
      ));
    },
    { timeout: 30 * 60_000 },
  );

  after(async () => {
    await controller?.stop();
  });

  test('a grid whose units the apiserver rejects settles: a stable status, each rejected object sent once, zero writes at resync', async () => {
    // The selector does not match the pod labels: every unit's Deployment is invalid (422).
    const template = { ...podSpec('bad'), selector: { matchLabels: { app: 'bad', tier: 'x' } } };
    await cluster().apply([deploymentGrid('bad', { gridUniqKey: 'zone', template })]);
    const g = await until('both units failed', async () => {
      const g = await admin.get<Obj>(DG('bad'));
      return g.status?.units?.every((u: Obj) => /ApplyFailed/.test(u.error ?? '')) && g.status.units.length === 2 && g;
    });
    assert.match(cond(g, 'Degraded').message, /^unit "a": ApplyFailed: .*; unit "b": ApplyFailed: /);
    assert.equal(cond(g, 'Progressing').reason, 'Blocked', 'a grid whose units fail is not Complete');
    await controller.waitIdle();
    await new Promise((r) => setTimeout(r, 500));
    const settled = await admin.get<Obj>(DG('bad'));
    const during = await resyncs(3);
    assert.deepEqual(during, [], 'no write during resyncs of a failing grid');
    assert.equal((await admin.get<Obj>(DG('bad'))).metadata.resourceVersion, settled.metadata.resourceVersion, 'status not rewritten');
    const sent = await controllerWrites((w) => w.resource === 'deployments' && !!w.name?.startsWith('bad-'));
    assert.deepEqual(sent.map((w) => `${w.name} ${w.code}`).sort(), ['bad-a 422', 'bad-b 422']);
    const warnings = (await events('bad')).filter((e) => e.type === 'Warning');
    assert.equal(warnings.length, 1, `one Warning for both units: ${JSON.stringify(warnings)}`);
    assert.match(warnings[0]!.note ?? '', /^2 units: unit "a": .*; unit "b": /);

    // Fixing the template makes the units converge.
    await cluster().apply([deploymentGrid('bad', { gridUniqKey: 'zone', template: podSpec('bad') })]);
    await until('bad healed', async () => cond(await admin.get<Obj>(DG('bad')), 'Degraded')?.status === 'False');
  });

  test('creating a grid: one write per object, one Created event naming every unit', async () => {
    const before = (await controllerWrites()).length;
    const withEnv = podSpec('agg');
    (withEnv.template.spec.containers[0] as Record<string, unknown>).env = [{ name: 'MODE', value: 'x' }];
    await cluster().apply([deploymentGrid('agg', { gridUniqKey: 'zone', template: withEnv })]);
    await until('agg status', async () => (await admin.get<Obj>(DG('agg'))).status?.totalUnits === 2);
    await controller.waitIdle();
    await new Promise((r) => setTimeout(r, 1000));
    const writes = (await controllerWrites()).slice(before);
    const deployments = writes.filter((w) => w.resource === 'deployments');
    assert.deepEqual(deployments.map((w) => w.name).sort(), ['agg-a', 'agg-b'], 'one apply per Deployment, no other request');
    const created = (await events('agg')).filter((e) => e.reason === 'Created');
    assert.equal(created.length, 1, JSON.stringify(created));
    assert.equal(created[0]!.note, 'Created 2 Deployments: agg-a (unit "a"), agg-b (unit "b")');

    // A field the template drops is removed from objects the grid created (not kept by the create's field entry).
    await cluster().apply([deploymentGrid('agg', { gridUniqKey: 'zone', template: podSpec('agg') })]);
    const both = () => Promise.all([admin.get<Obj>(DEPLOY('agg-a')), admin.get<Obj>(DEPLOY('agg-b'))]);
    await until(
      'env removed from both units',
      async () => (await both()).every((d) => d.spec.template.spec.containers[0].env === undefined),
      60_000,
      async () =>
        JSON.stringify(
          (await both()).map((d) => ({ mf: (d.metadata as Record<string, unknown>).managedFields, c: d.spec.template.spec.containers })),
        ),
    );
  });

  test('a conflict is announced once and noticed as soon as the foreign object is deleted', async () => {
    const foreign = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'blk-a', namespace: ns },
      spec: podSpec('foreign'),
    };
    await cluster().apply([foreign]);
    await cluster().apply([deploymentGrid('blk', { gridUniqKey: 'zone', template: podSpec('blk') })]);
    // Unit b's Deployment is ours: kube-controller-manager's first status update of it makes it
    // ready, a real change of the grid's status. Counting starts once the grid shows it.
    await until('conflict reported, unit b ready', async () => {
      const g = await admin.get<Obj>(DG('blk'));
      return cond(g, 'Degraded')?.reason === 'Conflict' && g.status?.readyUnits === 1;
    });
    assert.deepEqual(await resyncs(2), [], 'a standing conflict makes no write');
    const conflicts = (await events('blk')).filter((e) => e.reason === 'Conflict');
    assert.equal(conflicts.length, 1, `the Conflict Warning is posted once: ${JSON.stringify(conflicts)}`);
    const refused = await controllerWrites((w) => w.resource === 'deployments' && w.name === 'blk-a');
    assert.deepEqual(
      refused.map((w) => w.code),
      [409],
      'the foreign object was never written: one create attempt, refused',
    );

    // No resync is configured: only the deletion itself can wake the grid.
    await admin.request('DELETE', DEPLOY('blk-a'));
    const deletedAt = Date.now();
    const taken = await until(
      'blk-a taken by the grid',
      async () => {
        const d = await getOrUndefined(DEPLOY('blk-a'));
        return d?.metadata.ownerReferences?.[0]?.name === 'blk' && d;
      },
      15_000,
    );
    console.error(`[conflict] blk-a rendered ${Date.now() - deletedAt} ms after the foreign Deployment was deleted`);
    assert.equal(taken.spec.template.metadata.labels.app, 'blk');
    await until('conflict cleared', async () => cond(await admin.get<Obj>(DG('blk')), 'Degraded')?.status === 'False');
  });

  test("a name held by another grid's object is taken as soon as that grid is deleted", async () => {
    // Grid q over unit "r-a" and grid q-r over unit "a" both want Deployment q-r-a.
    await cluster().createNode('h-col', { col: 'r-a' });
    await cluster().apply([deploymentGrid('q', { gridUniqKey: 'col', template: podSpec('q') })]);
    await until('q-r-a of grid q', async () => (await getOrUndefined(DEPLOY('q-r-a')))?.metadata.ownerReferences?.[0]?.name === 'q');
    await cluster().apply([deploymentGrid('q-r', { gridUniqKey: 'zone', template: podSpec('qr') })]);
    const g = await until('q-r conflict', async () => {
      const g = await admin.get<Obj>(DG('q-r'));
      return cond(g, 'Degraded')?.reason === 'Conflict' && g;
    });
    assert.match(cond(g, 'Degraded').message, /unit "a": Conflict: Deployment hard\/q-r-a is controlled by another owner/);
    await admin.request('DELETE', DG('q'));
    await until(
      'q-r-a taken by grid q-r',
      async () => (await getOrUndefined(DEPLOY('q-r-a')))?.metadata.ownerReferences?.[0]?.name === 'q-r',
      30_000,
    );
    await until('q-r conflict cleared', async () => cond(await admin.get<Obj>(DG('q-r')), 'Degraded')?.status === 'False');
  });

  test('an override naming a unit no node carries is reported in status and an event, without degrading the grid', async () => {
    await cluster().apply([
      deploymentGrid('ovr', {
        gridUniqKey: 'zone',
        template: podSpec('ovr'),
        overrides: [
          { units: ['a', 'nowhere'], replicas: 0 },
          { units: ['elsewhere'], replicas: 0 },
        ],
      }),
    ]);
    const g = await until('unknown units reported', async () => {
      const g = await admin.get<Obj>(DG('ovr'));
      return cond(g, 'UnknownOverrideUnits')?.status === 'True' && g.status.totalUnits === 2 && g;
    });
    assert.equal(
      cond(g, 'UnknownOverrideUnits').message,
      'overrides name units no node carries (they apply once one does): "elsewhere" in overrides[1], "nowhere" in overrides[0]',
    );
    assert.equal(cond(g, 'Degraded').status, 'False');
    assert.equal(g.status.units.filter((u: Obj) => u.error).length, 0);
    await resyncs(1);
    const notices = (await events('ovr')).filter((e) => e.reason === 'UnitsNotFound');
    assert.equal(notices.length, 1, JSON.stringify(notices));
    assert.equal(notices[0]!.type, 'Normal');
  });

  test('a changed template.selector: reported per unit with consistent conditions, nothing sent; deleting the Deployment rolls it', async () => {
    await cluster().apply([deploymentGrid('sel', { gridUniqKey: 'zone', template: podSpec('sel') })]);
    await until('sel settled', async () => (await admin.get<Obj>(DG('sel'))).status?.units?.every((u: Obj) => u.deployment));
    await controller.waitIdle();
    const before = (await controllerWrites((w) => w.resource === 'deployments' && !!w.name?.startsWith('sel-'))).length;
    await cluster().apply([deploymentGrid('sel', { gridUniqKey: 'zone', template: podSpec('sel2') })]);
    const g = await until('selector change reported', async () => {
      const g = await admin.get<Obj>(DG('sel'));
      return g.status.observedGeneration === g.metadata.generation && cond(g, 'Degraded')?.reason === 'SelectorChanged' && g;
    });
    assert.match(
      cond(g, 'Degraded').message,
      /unit "a": SelectorChanged: the template's selector changed and a Deployment's selector is immutable: delete Deployment hard\/sel-a/,
    );
    assert.equal(cond(g, 'Progressing').status, 'False');
    assert.equal(cond(g, 'Progressing').reason, 'Blocked');
    assert.equal(cond(g, 'Progressing').message, 'units "a", "b" cannot roll out (see Degraded)');
    await resyncs(1);
    const after = await controllerWrites((w) => w.resource === 'deployments' && !!w.name?.startsWith('sel-'));
    assert.equal(after.length, before, 'a Deployment whose selector must change is not sent (it would be refused)');

    // The documented way out: delete the unit's Deployment (its pods go with it); the grid recreates it.
    await admin.request('DELETE', DEPLOY('sel-a'), { body: { propagationPolicy: 'Foreground' } });
    await until(
      'sel-a recreated with the new selector',
      async () => (await getOrUndefined(DEPLOY('sel-a')))?.spec.selector.matchLabels.app === 'sel2',
      60_000,
    );
    const unitA = await until('unit a healthy', async () => {
      const g = await admin.get<Obj>(DG('sel'));
      const a = g.status.units.find((u: Obj) => u.name === 'a');
      return !a.error && g;
    });
    assert.match(cond(unitA, 'Degraded').message, /^unit "b": SelectorChanged/);
  });

  test('a unit that appears and goes again before the grid watch shows the first status write: the status ends with the last units', async () => {
    const SG = `/apis/servicegroup.io/v1alpha1/namespaces/${ns}/servicegrids/lag`;
    const units = async () => ((await admin.get<Obj>(SG)).status?.units ?? []).map((u: Obj) => u.name).join(',');
    const label = (node: string, value: string | null) =>
      admin.mergePatch(`/api/v1/nodes/${node}`, { metadata: { labels: { lane: value } } }, 'operator');
    await label('h-a', 'x');
    await cluster().apply([
      {
        apiVersion: 'servicegroup.io/v1alpha1',
        kind: 'ServiceGrid',
        metadata: { name: 'lag', namespace: ns },
        spec: { gridUniqKey: 'lane', template: { selector: { app: 'lag' }, ports: [{ port: 80 }] } },
      },
    ]);
    await until('status names unit x', async () => (await units()) === 'x');
    await controller.waitIdle();
    try {
      await client.lagging(1_500, async () => {
        await label('h-b', 'y');
        await until('status names units x and y', async () => (await units()) === 'x,y');
        // The controller's cache still shows a status naming x only, which is right again now.
        await label('h-b', null);
        await until('status names unit x again', async () => (await units()) === 'x', 15_000);
        // And it stays so once the late events have all arrived.
        await new Promise((r) => setTimeout(r, 2000));
        await controller.waitIdle();
        assert.equal(await units(), 'x');
      });
    } finally {
      await label('h-a', null);
    }
  });

  test('a sync in a later second, before the grid watch shows the first status write, writes no second status (condition times come from what the grid holds)', async () => {
    const statusWrites = () => controllerWrites((w) => w.resource === 'servicegrids' && w.name === 'late' && w.subresource === 'status');
    await client.lagging(3_000, async () => {
      await cluster().apply([
        {
          apiVersion: 'servicegroup.io/v1alpha1',
          kind: 'ServiceGrid',
          metadata: { name: 'late', namespace: ns },
          spec: { gridUniqKey: 'zone', template: { selector: { app: 'late' }, ports: [{ port: 80 }] } },
        },
      ]);
      await until(
        'status written',
        async () => (await admin.get<Obj>(`/apis/servicegroup.io/v1alpha1/namespaces/${ns}/servicegrids/late`)).status?.totalUnits === 2,
      );
      // The status holds this second in its condition times; the cache shows the grid without it
      // for a while yet.
      await new Promise((r) => setTimeout(r, 1_200));
      controller.resyncAll();
      await controller.waitIdle();
      await new Promise((r) => setTimeout(r, 4_000));
    });
    await new Promise((r) => setTimeout(r, 1_000));
    const writes = await statusWrites();
    assert.equal(writes.length, 1, JSON.stringify(writes));
  });

  test('a pod left on a node that moved to another unit: reported, evicted once its disruption budget allows, recreated in its unit', async () => {
    await cluster().createNode('h-r1', { room: 'x' });
    await cluster().createNode('h-r2', { room: 'x' });
    await cluster().createNode('h-r3', { room: 'y' });
    await cluster().apply([deploymentGrid('ev', { gridUniqKey: 'room', template: podSpec('ev', 1) })]);
    const podsOf = async (unit: string) =>
      (
        await admin.get<{ items: Obj[] }>(`/api/v1/namespaces/${ns}/pods`, {
          labelSelector: `servicegroup.io/grid=ev,servicegroup.io/unit=${unit}`,
        })
      ).items;
    const [first] = await until(
      'unit x pod scheduled',
      async () => {
        const pods = (await podsOf('x')).filter(
          (p) => p.spec.nodeName && !(p.metadata as { deletionTimestamp?: string }).deletionTimestamp,
        );
        return pods.length === 1 && pods;
      },
      90_000,
    );
    const node = first!.spec.nodeName as string;
    const otherX = node === 'h-r1' ? 'h-r2' : 'h-r1';
    const pdb = {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: 'ev', namespace: ns },
      spec: { minAvailable: 1, selector: { matchLabels: { app: 'ev', 'servicegroup.io/unit': 'x' } } },
    };
    await cluster().apply([pdb]);
    const budget = () => admin.get<Obj>(`/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets/ev`);
    await until(
      'the budget allows no disruption',
      async () => {
        const b = await budget();
        return b.status?.observedGeneration === b.metadata.generation && b.status.currentHealthy === 1 && b.status.disruptionsAllowed === 0;
      },
      60_000,
      async () => JSON.stringify({ budget: (await budget()).status, pods: (await podsOf('x')).map((p) => p.status) }),
    );
    await cluster().apply([{ apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: { room: 'y' } } }]);
    const pending = await until('misplaced pod reported while the budget blocks its eviction', async () => {
      const g = await admin.get<Obj>(DG('ev'));
      return cond(g, 'MisplacedPods')?.reason === 'EvictionPending' && g;
    });
    assert.equal(
      cond(pending, 'MisplacedPods').message,
      `1 pod runs outside its unit: ${first!.metadata.name} of unit "x" on ${node} (unit "y")`,
    );
    assert.ok(await getOrUndefined(`/api/v1/namespaces/${ns}/pods/${first!.metadata.name}`), 'the budget is respected');
    await admin.request('DELETE', `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets/ev`);
    const replaced = await until(
      'unit x pod recreated on a unit x node',
      async () => {
        const pods = await podsOf('x');
        return pods.length === 1 && pods[0]!.metadata.uid !== first!.metadata.uid && pods[0]!.spec.nodeName === otherX && pods[0];
      },
      90_000,
    );
    assert.ok(replaced);
    const evictions = await controllerWrites((w) => w.resource === 'pods' && w.subresource === 'eviction');
    assert.ok(
      evictions.every((w) => w.name === first!.metadata.name) && evictions.some((w) => w.code === 201),
      `the misplaced pod was evicted through the Eviction API: ${JSON.stringify(evictions)}`,
    );
    assert.ok(evictions.length <= 4, `evictions retried with backoff while the budget blocked them: ${evictions.length}`);
    const g = await until('status says every pod is in its unit', async () => {
      const g = await admin.get<Obj>(DG('ev'));
      return cond(g, 'MisplacedPods')?.status === 'False' && g;
    });
    assert.equal(cond(g, 'MisplacedPods').reason, 'AsExpected');
    const evicted = (await events('ev')).filter((e) => e.reason === 'Evicted');
    assert.equal(evicted.length, 1);
    assert.match(evicted[0]!.note ?? '', new RegExp(`^Evicted 1 pod: ${first!.metadata.name} on ${node} \\(unit "x"\\)$`));
  });
});
