// StatefulSetGrid controller against the real test cluster: the controller runs in this process
// with the ServiceAccount and RBAC of examples/install/controller.yaml; kube-controller-manager
// runs the StatefulSets and binds their claims to static volumes (test/storage.ts), the scheduler
// places their pods and kwok plays the kubelets.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { GridController } from '../controllers/reconcile/controller.ts';
import type { KubeClient } from '../kube/client.ts';
import { useCluster } from './cluster/cluster.ts';
import { CONTROLLER_USER, getIfExists, type Obj, startGridController, until, waitForQuietWrites } from './controllers-helpers.ts';
import { UNIT_LOCAL_STORAGE_CLASS, unitLocalStorageClass, unitLocalVolume } from './storage.ts';

const cluster = useCluster({ kwok: true, controllerManager: true, scheduler: true });
const ns = 'stateful';

let admin: KubeClient;
let controller: GridController;

const STSG = (n: string) => `/apis/servicegroup.io/v1alpha1/namespaces/${ns}/statefulsetgrids/${n}`;

async function listStatefulSets(grid: string): Promise<Obj[]> {
  const l = await admin.get<{ items: Obj[] }>(`/apis/apps/v1/namespaces/${ns}/statefulsets`, {
    labelSelector: `servicegroup.io/grid=${grid}`,
  });
  return l.items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

async function listPods(grid: string): Promise<Obj[]> {
  const l = await admin.get<{ items: Obj[] }>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: `servicegroup.io/grid=${grid}` });
  return l.items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

async function events(grid: string): Promise<{ reason: string; type: string; note?: string }[]> {
  const l = await admin.get<{ items: { reason: string; type: string; note?: string; regarding?: { name: string; kind: string } }[] }>(
    `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
  );
  return l.items.filter((e) => e.regarding?.kind === 'StatefulSetGrid' && e.regarding.name === grid);
}

function cond(obj: Obj, type: string) {
  return (obj.status?.conditions ?? []).find((c: { type: string }) => c.type === type);
}

function statefulSetGrid(name: string, serviceName: string, image = 'mysql:8', replicas = 2) {
  return {
    apiVersion: 'servicegroup.io/v1alpha1',
    kind: 'StatefulSetGrid',
    metadata: { name, namespace: ns },
    spec: {
      gridUniqKey: 'zone',
      template: {
        replicas,
        serviceName,
        selector: { matchLabels: { app: name } },
        template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'db', image }] } },
      },
    },
  };
}

async function explain(): Promise<string> {
  const r = await cluster().kubectl(['get', 'stsg,statefulsets,pods', '-n', ns, '-o', 'wide']);
  return r.stdout + r.stderr;
}

/** Which unit each node of this test is in (kept in step with the relabel below). */
const unitOfNode: Record<string, string> = { 's-a1': 'a', 's-a2': 'a', 's-b': 'b' };

/** One pod per unit with a claim from `volumeClaimTemplates`; claims go with their StatefulSet. */
const dataGrid = {
  apiVersion: 'servicegroup.io/v1alpha1',
  kind: 'StatefulSetGrid',
  metadata: { name: 'data', namespace: ns },
  spec: {
    gridUniqKey: 'zone',
    template: {
      replicas: 1,
      serviceName: 'data-svc',
      selector: { matchLabels: { app: 'data' } },
      persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Delete', whenScaled: 'Retain' },
      template: {
        metadata: { labels: { app: 'data' } },
        spec: { containers: [{ name: 'db', image: 'mysql:8.4', volumeMounts: [{ name: 'data', mountPath: '/var/lib/mysql' }] }] },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data', labels: { app: 'data' } },
          spec: { accessModes: ['ReadWriteOnce'], storageClassName: UNIT_LOCAL_STORAGE_CLASS, resources: { requests: { storage: '1Gi' } } },
        },
      ],
    },
  },
};

/** The claim, or undefined once it is gone. */
function readClaim(name: string): Promise<Obj | undefined> {
  return getIfExists(admin, `/api/v1/namespaces/${ns}/persistentvolumeclaims/${name}`);
}

async function explainStorage(): Promise<string> {
  const r = await cluster().kubectl(['get', 'stsg,statefulsets,pods,pvc,pv', '-n', ns, '-o', 'wide']);
  return r.stdout + r.stderr;
}

/** Waits until the controller's writes settle, forces a resync of every grid and checks it wrote nothing. */
async function assertResyncWritesNothing(): Promise<void> {
  const writes = await waitForQuietWrites(cluster(), controller);
  assert.ok(
    (await cluster().writeRequests(CONTROLLER_USER)).some((w) => w.resource === 'statefulsets' && w.code < 300),
    'the controller did write StatefulSets before',
  );
  controller.resyncAll();
  assert.ok(controller.queue.length + controller.queue.inFlight >= 1);
  await controller.waitIdle(120_000);
  await new Promise((r) => setTimeout(r, 1000));
  const after = await cluster().writeRequests(CONTROLLER_USER);
  assert.equal(after.length, writes, `writes during resync: ${JSON.stringify(after.slice(writes))}`);
}

describe('StatefulSetGrid controller (in process)', () => {
  before(
    async () => {
      ({ admin, controller } = await startGridController(cluster(), ns, {
        's-a1': { zone: 'a' },
        's-a2': { zone: 'a' },
        's-b': { zone: 'b' },
      }));
    },
    { timeout: 30 * 60_000 },
  );

  after(async () => {
    await controller?.stop();
  });

  test('one StatefulSet per unit, pinned, with the given serviceName; pods Ready; status and printer columns filled', async () => {
    await cluster().apply([statefulSetGrid('db', 'db-svc')]);
    const sets = await until('two StatefulSets', async () => {
      const l = await listStatefulSets('db');
      return l.length === 2 && l;
    });
    assert.deepEqual(
      sets.map((s) => s.metadata.name),
      ['db-a', 'db-b'],
    );
    for (const [s, unit] of [
      [sets[0]!, 'a'],
      [sets[1]!, 'b'],
    ] as const) {
      assert.equal(s.spec.serviceName, 'db-svc');
      assert.deepEqual(s.spec.template.spec.nodeSelector, { zone: unit });
      assert.equal(s.metadata.labels?.['servicegroup.io/unit'], unit);
      const owner = s.metadata.ownerReferences?.find((r: { controller?: boolean }) => r.controller);
      assert.equal(owner?.kind, 'StatefulSetGrid');
    }

    // Stable pod names per unit, each on a node of its own unit, Ready.
    const pods = await until(
      'four Ready pods',
      async () => {
        const l = await listPods('db');
        const ready = l.filter((p) =>
          p.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True'),
        );
        return ready.length === 4 && l;
      },
      120_000,
      explain,
    );
    assert.deepEqual(
      pods.map((p) => p.metadata.name),
      ['db-a-0', 'db-a-1', 'db-b-0', 'db-b-1'],
    );
    for (const p of pods) {
      const unit = p.metadata.labels?.['servicegroup.io/unit'];
      assert.ok(unit === 'a' ? p.spec.nodeName.startsWith('s-a') : p.spec.nodeName === 's-b', `${p.metadata.name} on ${p.spec.nodeName}`);
    }

    const grid = await until(
      'grid status Ready',
      async () => {
        const g = await admin.get<Obj>(STSG('db'));
        return g.status?.observedGeneration === g.metadata.generation && cond(g, 'Ready')?.status === 'True' && g;
      },
      120_000,
      explain,
    );
    assert.equal(grid.status.totalUnits, 2);
    assert.equal(grid.status.readyUnits, 2);
    assert.deepEqual(
      grid.status.units.map((u: { name: string; statefulSet: string; readyReplicas: number; replicas: number }) => [
        u.name,
        u.statefulSet,
        u.replicas,
        u.readyReplicas,
      ]),
      [
        ['a', 'db-a', 2, 2],
        ['b', 'db-b', 2, 2],
      ],
    );
    assert.equal(cond(grid, 'Progressing')?.status, 'False');
    assert.equal(cond(grid, 'Degraded')?.status, 'False');

    const r = await cluster().kubectl(['get', 'stsg', 'db', '-n', ns]);
    assert.equal(r.code, 0, r.stderr);
    const [header, row] = r.stdout.trim().split('\n');
    assert.match(header!, /^NAME\s+KEY\s+UNITS\s+READY\s+DEGRADED\s+AGE/);
    assert.match(row!, /^db\s+zone\s+2\s+2\s+/);

    await controller.waitIdle();
    const created = (await events('db')).find((e) => e.reason === 'Created');
    assert.match(created?.note ?? '', /^Created 2 StatefulSets: db-a \(unit "a"\), db-b \(unit "b"\)/);
  });

  test('a template change to an immutable field is reported, and the StatefulSets are left as they run', async () => {
    const before = (await listStatefulSets('db')).map((s) => s.metadata.uid);
    await cluster().apply([statefulSetGrid('db', 'other-svc')]);
    const grid = await until(
      'Degraded with ImmutableFieldChanged',
      async () => {
        const g = await admin.get<Obj>(STSG('db'));
        return g.status?.observedGeneration === g.metadata.generation && cond(g, 'Degraded')?.status === 'True' && g;
      },
      60_000,
      explain,
    );
    assert.equal(cond(grid, 'Degraded')?.reason, 'ImmutableFieldChanged');
    assert.equal(cond(grid, 'Progressing')?.status, 'False');
    assert.equal(cond(grid, 'Progressing')?.reason, 'Blocked');
    for (const u of grid.status.units as { name: string; error?: string }[]) {
      assert.match(u.error ?? '', /^ImmutableFieldChanged: the template changes serviceName, which a StatefulSet cannot change/);
      assert.match(u.error ?? '', new RegExp(`delete StatefulSet ${ns}/db-${u.name}`));
    }
    await controller.waitIdle();
    assert.ok(
      (await events('db')).some((e) => e.type === 'Warning' && e.reason === 'ImmutableFieldChanged' && /2 units/.test(e.note ?? '')),
    );
    const sets = await listStatefulSets('db');
    assert.deepEqual(
      sets.map((s) => s.metadata.uid),
      before,
    );
    assert.ok(sets.every((s) => s.spec.serviceName === 'db-svc'));

    // Back to the running value: the error clears without a write to the StatefulSets.
    await cluster().apply([statefulSetGrid('db', 'db-svc')]);
    await until('Degraded cleared', async () => {
      const g = await admin.get<Obj>(STSG('db'));
      return g.status?.observedGeneration === g.metadata.generation && cond(g, 'Degraded')?.status === 'False';
    });
  });

  test('a template change rolls every unit; the grid is Ready again once each StatefulSet runs its update revision', async () => {
    await cluster().apply([statefulSetGrid('db', 'db-svc', 'mysql:8.4')]);
    const grid = await until(
      'rolled out',
      async () => {
        const g = await admin.get<Obj>(STSG('db'));
        return (
          g.status?.observedGeneration === g.metadata.generation &&
          cond(g, 'Progressing')?.reason === 'Complete' &&
          cond(g, 'Ready')?.status === 'True' &&
          g
        );
      },
      180_000,
      explain,
    );
    assert.equal(grid.status.readyUnits, 2);
    for (const s of await listStatefulSets('db')) {
      assert.equal(s.spec.template.spec.containers[0].image, 'mysql:8.4');
      assert.equal(s.status.currentRevision, s.status.updateRevision, s.metadata.name);
    }
    const pods = await listPods('db');
    assert.deepEqual(
      pods.map((p) => [p.metadata.name, p.spec.containers[0].image]),
      [
        ['db-a-0', 'mysql:8.4'],
        ['db-a-1', 'mysql:8.4'],
        ['db-b-0', 'mysql:8.4'],
        ['db-b-1', 'mysql:8.4'],
      ],
    );
  });

  test('a forced resync of a settled StatefulSetGrid makes no write request', async () => {
    await assertResyncWritesNothing();
  });

  test('deleting the grid deletes its StatefulSets', async () => {
    await admin.delete(STSG('db'));
    // kube-controller-manager's garbage collector deletes them; it takes tens of seconds on a busy machine.
    await until('StatefulSets gone', async () => (await listStatefulSets('db')).length === 0, 180_000, explain);
  });

  test("volumeClaimTemplates: each unit's pod gets its own claim, bound to a volume of its own unit", async () => {
    // One static volume per unit (c is for the next test), bound when the unit's pod is scheduled.
    await cluster().apply([unitLocalStorageClass(), ...['a', 'b', 'c'].map((unit) => unitLocalVolume('zone', unit)), dataGrid]);
    for (const unit of ['a', 'b']) {
      const claim = await until(
        `claim data-data-${unit}-0 bound`,
        async () => {
          const c = await readClaim(`data-data-${unit}-0`);
          return c?.status?.phase === 'Bound' && c;
        },
        180_000,
        explainStorage,
      );
      // The scheduler placed the pod in its unit, and the volume binder picked the volume whose node affinity is that unit.
      assert.equal(claim.spec.volumeName, `unit-${unit}`);
      assert.equal(claim.metadata.labels?.app, 'data');
      const pod = await until(
        `pod data-${unit}-0 Ready`,
        async () => {
          const p = await admin.get<Obj>(`/api/v1/namespaces/${ns}/pods/data-${unit}-0`).catch(() => undefined);
          return p?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True') && p;
        },
        120_000,
        explainStorage,
      );
      assert.equal(unitOfNode[pod.spec.nodeName], unit, `data-${unit}-0 on ${pod.spec.nodeName}`);
      assert.deepEqual(pod.spec.volumes.find((v: { name: string }) => v.name === 'data')?.persistentVolumeClaim, {
        claimName: `data-data-${unit}-0`,
      });
    }
    const claims = await admin.get<{ items: Obj[] }>(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, { labelSelector: 'app=data' });
    assert.deepEqual(claims.items.map((c) => c.metadata.name).sort(), ['data-data-a-0', 'data-data-b-0']);
    // The apiserver fills in the claim templates (volumeMode, status): a settled grid is still not rewritten.
    await assertResyncWritesNothing();
  });

  test("a unit that disappears: its StatefulSet is deleted, and with whenDeleted: Delete its claim too; the new unit's claim binds there", async () => {
    // whenDeleted: Delete: the StatefulSet controller made each claim owned by its StatefulSet.
    const owner = (await readClaim('data-data-b-0'))?.metadata.ownerReferences?.find((r: { kind: string }) => r.kind === 'StatefulSet');
    assert.equal(owner?.name, 'data-b');
    // s-b, unit b's only node, moves to unit c.
    await cluster().kubectl(['label', 'node', 's-b', 'zone=c', '--overwrite']);
    unitOfNode['s-b'] = 'c';
    await until(
      'StatefulSets data-a and data-c only',
      async () => JSON.stringify((await listStatefulSets('data')).map((s) => s.metadata.name)) === '["data-a","data-c"]',
      60_000,
      explainStorage,
    );
    // The StatefulSet controller made the claim owned by its StatefulSet (whenDeleted: Delete), so the garbage collector deletes it.
    await until('claim data-data-b-0 deleted', async () => (await readClaim(`data-data-b-0`)) === undefined, 180_000, explainStorage);
    const claim = await until(
      'claim data-data-c-0 bound',
      async () => {
        const c = await readClaim(`data-data-c-0`);
        return c?.status?.phase === 'Bound' && c;
      },
      180_000,
      explainStorage,
    );
    assert.equal(claim.spec.volumeName, 'unit-c');
    // The claim of the unit that stayed is untouched.
    const kept = (await readClaim('data-data-a-0'))!;
    assert.equal(kept.status.phase, 'Bound');
    assert.equal(kept.spec.volumeName, 'unit-a');
  });
});
