// DeploymentGrid rollouts against the real test cluster (kube-controller-manager runs the unit
// Deployments, kwok runs their pods): the apiserver's own history of the Deployments, recorded
// by a watch, shows how many units changed at once and in which order.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { GridController } from '../controllers/reconcile/controller.ts';
import type { KubeClient } from '../kube/client.ts';
import { useCluster } from './cluster/cluster.ts';
import { type Obj, startGridController, until } from './controllers-helpers.ts';

const cluster = useCluster({ controllerManager: true, scheduler: true, kwok: true });
const ns = 'rollouts';
const KEY = 'site';
const SITES = Array.from({ length: 10 }, (_, i) => `s${i}`);
const HASH = 'servicegroup.io/render-hash';

let admin: KubeClient;
let controller: GridController;

const DG = (n: string) => `/apis/servicegroup.io/v1alpha1/namespaces/${ns}/deploymentgrids/${n}`;

function podSpec(image: string, extra: Record<string, unknown> = {}) {
  return {
    replicas: 1,
    selector: { matchLabels: { app: 'web' } },
    template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image, ...extra }] } },
  };
}

async function createGrid(name: string, spec: object): Promise<void> {
  await admin.request('POST', `/apis/servicegroup.io/v1alpha1/namespaces/${ns}/deploymentgrids`, {
    body: { apiVersion: 'servicegroup.io/v1alpha1', kind: 'DeploymentGrid', metadata: { name, namespace: ns }, spec },
  });
}

async function patchGrid(name: string, spec: object): Promise<void> {
  await admin.mergePatch(DG(name), { spec });
}

async function list(resource: string, grid: string): Promise<Obj[]> {
  const path = resource === 'pods' ? `/api/v1/namespaces/${ns}/pods` : `/apis/apps/v1/namespaces/${ns}/${resource}`;
  return (await admin.get<{ items: Obj[] }>(path, { labelSelector: `servicegroup.io/grid=${grid}` })).items;
}

function available(d: Obj): boolean {
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  return (
    (s.observedGeneration ?? 0) >= (d.metadata.generation ?? 0) &&
    (s.updatedReplicas ?? 0) === want &&
    (s.availableReplicas ?? 0) >= want &&
    (s.replicas ?? 0) === want
  );
}

/** Waits until the grid's rollout of its current generation is complete and every Deployment is available. */
async function settled(name: string, timeoutMs = 180_000): Promise<Obj> {
  return until(
    `grid ${name} rolled out`,
    async () => {
      const g = await admin.get<Obj>(DG(name));
      const r = g.status?.rollout;
      if (g.status?.observedGeneration !== g.metadata.generation || !r || r.updatedUnits !== SITES.length || r.stable?.target !== r.target)
        return false;
      const ds = await list('deployments', name);
      return ds.length === SITES.length && ds.every(available) && g;
    },
    timeoutMs,
    async () => JSON.stringify((await admin.get<Obj>(DG(name))).status, null, 1),
  );
}

interface Seen {
  unit: string;
  hash: string;
  available: boolean;
}

/** Records every Deployment event of a grid from `resourceVersion` on, until stopped. */
function recordDeployments(grid: string, resourceVersion: string): { history: Seen[]; stop: () => void } {
  const history: Seen[] = [];
  const abort = new AbortController();
  const read = async () => {
    const res = await admin.stream('GET', `/apis/apps/v1/namespaces/${ns}/deployments`, {
      query: { labelSelector: `servicegroup.io/grid=${grid}`, resourceVersion, watch: true },
      idleTimeoutMs: 600_000,
      signal: abort.signal,
    });
    let buffered = '';
    res.setEncoding('utf8');
    for await (const chunk of res) {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const e = JSON.parse(buffered.slice(0, nl)) as { type: string; object: Obj };
        buffered = buffered.slice(nl + 1);
        if (e.type === 'ADDED' || e.type === 'MODIFIED')
          history.push({
            unit: e.object.metadata.labels!['servicegroup.io/unit']!,
            hash: e.object.metadata.annotations![HASH]!,
            available: available(e.object),
          });
      }
    }
  };
  read().catch(() => {});
  return { history, stop: () => abort.abort() };
}

describe('DeploymentGrid rollouts', () => {
  before(
    async () => {
      ({ admin, controller } = await startGridController(cluster(), ns, Object.fromEntries(SITES.map((s) => [`node-${s}`, { [KEY]: s }]))));
    },
    { timeout: 30 * 60_000 },
  );

  after(async () => {
    await controller?.stop();
  });

  test('maxUnavailableUnits 2: never more than 2 units changing at once, waves in order', { timeout: 600_000 }, async () => {
    const waves = [['s7'], ['s2', 's5', 's9']];
    await createGrid('waves', {
      gridUniqKey: KEY,
      template: podSpec('app:1'),
      rollout: { maxUnavailableUnits: 2, waves: waves.map((units) => ({ units })) },
    });
    const before = await settled('waves');
    const oldHashes = new Map(
      (await list('deployments', 'waves')).map((d) => [d.metadata.labels!['servicegroup.io/unit']!, d.metadata.annotations![HASH]!]),
    );
    const rv = (await admin.get<{ metadata: { resourceVersion: string } }>(`/apis/apps/v1/namespaces/${ns}/deployments`, { limit: 1 }))
      .metadata.resourceVersion;
    const rec = recordDeployments('waves', rv);
    await patchGrid('waves', { template: podSpec('app:2') });
    const done = await settled('waves');
    rec.stop();
    assert.notEqual(done.status.rollout.target, before.status.rollout.target);

    // Replay the apiserver's history: a unit is changing from its first object with a new hash
    // until that object is available.
    const changing = new Set<string>();
    const started: string[] = [];
    const finished = new Set<string>();
    let most = 0;
    for (const e of rec.history) {
      if (e.hash === oldHashes.get(e.unit)) continue;
      if (!started.includes(e.unit)) {
        started.push(e.unit);
        // Wave order: every unit of earlier waves has finished before a unit of a later wave starts.
        const wave = waves.findIndex((w) => w.includes(e.unit));
        const mine = wave < 0 ? waves.length : wave;
        for (const earlier of waves.slice(0, mine).flat())
          assert.ok(finished.has(earlier), `unit ${e.unit} (wave ${mine + 1}) started before ${earlier} finished`);
      }
      if (e.available) {
        changing.delete(e.unit);
        finished.add(e.unit);
      } else if (!finished.has(e.unit)) changing.add(e.unit);
      most = Math.max(most, changing.size);
    }
    assert.deepEqual([...started].sort(), [...SITES].sort(), 'every unit changed once');
    assert.ok(most <= 2, `at most 2 units changing at once, saw ${most}`);
    assert.ok(most >= 1);
    assert.equal(started[0], 's7');
    assert.deepEqual([...started.slice(1, 4)].sort(), ['s2', 's5', 's9']);
    assert.equal(done.status.rollout.summary, '10/10');
    const columns = await cluster().kubectl(['get', 'dg', 'waves', '-n', ns]);
    assert.match(columns.stdout, /ROLLOUT[\s\S]*10\/10/);
    const ev = (
      await admin.get<{ items: { reason: string; note?: string; regarding?: { name: string } }[] }>(
        `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
      )
    ).items.filter((e) => e.regarding?.name === 'waves');
    assert.ok(
      ev.some((e) => e.reason === 'RolloutWave' && /wave 1\/3: "s7"/.test(e.note ?? '')),
      JSON.stringify(ev),
    );
    assert.ok(ev.some((e) => e.reason === 'RolloutWave' && /wave 2\/3/.test(e.note ?? '')));
    assert.ok(ev.some((e) => e.reason === 'RolloutComplete'));
  });

  test('a unit that never becomes available halts the rollout after the first wave; rollback Auto restores it', {
    timeout: 600_000,
  }, async () => {
    await createGrid('halt', {
      gridUniqKey: KEY,
      template: podSpec('app:1'),
      rollout: { maxUnavailableUnits: 2, waves: [{ units: ['s0', 's1'] }], progressDeadlineSeconds: 10, rollback: 'Auto' },
    });
    const before = await settled('halt');
    const deployments = await list('deployments', 'halt');
    const unitOf = (d: Obj) => d.metadata.labels!['servicegroup.io/unit']!;
    const untouched = new Map(
      deployments.filter((d) => !['s0', 's1'].includes(unitOf(d))).map((d) => [d.metadata.name, d.metadata.resourceVersion]),
    );
    const stableHash = new Map(deployments.map((d) => [unitOf(d), d.metadata.annotations![HASH]]));
    // No node can hold this pod: it stays Pending, the Deployment never becomes available.
    await patchGrid('halt', { template: podSpec('app:2', { resources: { requests: { cpu: '100000' } } }) });
    const halted = await until(
      'rollout halted',
      async () => {
        const g = await admin.get<Obj>(DG('halt'));
        const p = (g.status?.conditions ?? []).find((c: { type: string }) => c.type === 'Progressing');
        return p?.reason === 'RolloutHalted' && g;
      },
      180_000,
      async () => JSON.stringify((await admin.get<Obj>(DG('halt'))).status, null, 1),
    );
    const progressing = halted.status.conditions.find((c: { type: string }) => c.type === 'Progressing');
    assert.equal(progressing.status, 'False');
    assert.match(progressing.message, /unit "s[01]": ProgressDeadlineExceeded/);
    assert.equal(halted.status.rollout.summary, 'Halted');
    assert.equal(halted.status.rollout.stable.target, before.status.rollout.target);
    // rollback Auto: the first wave returns to the stable templates and becomes available again.
    await until(
      'first wave rolled back',
      async () => {
        const ds = (await list('deployments', 'halt')).filter((d) => ['s0', 's1'].includes(unitOf(d)));
        return ds.every((d) => d.metadata.annotations![HASH] === stableHash.get(unitOf(d)) && available(d));
      },
      180_000,
    );
    const after = await list('deployments', 'halt');
    for (const d of after)
      if (untouched.has(d.metadata.name))
        assert.equal(
          d.metadata.resourceVersion,
          untouched.get(d.metadata.name),
          `${d.metadata.name} was written during the halted rollout`,
        );
    const ev = (
      await admin.get<{ items: { type: string; reason: string; note?: string; regarding?: { name: string } }[] }>(
        `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
      )
    ).items.filter((e: { regarding?: { name: string } }) => e.regarding?.name === 'halt');
    assert.ok(
      ev.some((e) => e.type === 'Warning' && e.reason === 'RolloutHalted' && /unit "s[01]"/.test(e.note ?? '')),
      JSON.stringify(ev),
    );
    const g = await admin.get<Obj>(DG('halt'));
    assert.equal(
      (g.status.conditions ?? []).find((c: { type: string }) => c.type === 'Progressing').reason,
      'RolloutHalted',
      'the halt lasts until the templates change',
    );
  });

  test('pause holds every unit; resume continues; deleting the grid mid-rollout leaves no orphans', { timeout: 600_000 }, async () => {
    await createGrid('pause', { gridUniqKey: KEY, template: podSpec('app:1'), rollout: { maxUnavailableUnits: 1, pause: true } });
    await settled('pause');
    const hashes = new Map((await list('deployments', 'pause')).map((d) => [d.metadata.name, d.metadata.annotations![HASH]]));
    await patchGrid('pause', { template: podSpec('app:2') });
    const paused = await until('paused rollout reported', async () => {
      const g = await admin.get<Obj>(DG('pause'));
      return g.status?.observedGeneration === g.metadata.generation && g;
    });
    assert.equal(paused.status.rollout.summary, 'Paused 0/10');
    assert.equal(paused.status.conditions.find((c: { type: string }) => c.type === 'Progressing').reason, 'RolloutPaused');
    for (const d of await list('deployments', 'pause'))
      assert.equal(d.metadata.annotations![HASH], hashes.get(d.metadata.name), `${d.metadata.name} changed while paused`);

    await patchGrid('pause', { rollout: { pause: false } });
    await until('resumed rollout updated a unit', async () => {
      const g = await admin.get<Obj>(DG('pause'));
      return (g.status?.rollout?.updatedUnits ?? 0) >= 1 && g.status.rollout.updatedUnits < 10;
    });
    await admin.request('DELETE', DG('pause'), { body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' } });
    await until(
      'no Deployment, ReplicaSet or pod of the grid left',
      async () => {
        for (const r of ['deployments', 'replicasets', 'pods']) if ((await list(r, 'pause')).length > 0) return false;
        return true;
      },
      180_000,
    );
  });
});
