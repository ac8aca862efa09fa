// The controller's watches over a link that goes silent. A half-open connection (the peer gone
// without a FIN or RST, as behind a NAT or a WAN link that drops) delivers no byte and no error:
// only the controller's own idle timeout can notice it. The relay's hang() is such a link: open
// connections stay open and move nothing, new ones are held. The controller must give up its
// silent watches within --watch-idle-timeout and dial again, so that once the link is back it
// catches up at once instead of waiting for TCP to give up.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { KubeClient } from '../kube/client.ts';
import { freePort, useCluster } from './cluster/cluster.ts';
import { type Relay, startRelay } from './cluster/relay.ts';
import { clientFor, deploymentGrid, installCrds, installRbac, type Obj, root, until } from './controllers-helpers.ts';

const cluster = useCluster({});
const ns = 'silent';
const IDLE_SECONDS = 4;

let admin: KubeClient;
let relay: Relay;
let controller: ChildProcess;
const output: string[] = [];

const grid = (replicas: number) => deploymentGrid('web', ns, { replicas });

const replicasOfUnit = async () =>
  (await admin.get<Obj>(`/apis/apps/v1/namespaces/${ns}/deployments/web-a`).catch(() => undefined))?.spec.replicas as number | undefined;

describe('controller watches', () => {
  before(
    async () => {
      const c = cluster();
      await installCrds(c);
      await installRbac(c);
      admin = clientFor(c.adminKubeconfigPath);
      const api = new URL(c.server);
      relay = await startRelay({ host: api.hostname, port: Number(api.port) });
      const kubeconfig = await c.kubeconfigForServiceAccount('servicegroup-system', 'servicegroup-controller', {
        server: `https://127.0.0.1:${relay.port}`,
      });
      await c.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }]);
      // A Node object is all the controller reads (its labels); no kubelet is needed.
      await c.apply([{ apiVersion: 'v1', kind: 'Node', metadata: { name: 'w-a', labels: { zone: 'a' } } }]);
      controller = spawn(
        process.execPath,
        [
          'controllers/main.ts',
          `--kubeconfig=${kubeconfig}`,
          `--metrics-bind-address=127.0.0.1:${await freePort()}`,
          '--health-probe-bind-address=0',
          '--leader-elect=false',
          // No resync during the test: only the watches can bring the change.
          '--resync-period=1h',
          `--watch-idle-timeout=${IDLE_SECONDS}s`,
        ],
        { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      controller.stdout!.setEncoding('utf8').on('data', (d: string) => output.push(d));
      controller.stderr!.setEncoding('utf8').on('data', (d: string) => output.push(d));
    },
    { timeout: 30 * 60_000 },
  );

  after(async () => {
    controller?.kill('SIGKILL');
    await relay?.close();
  });

  test('a hung link: silent watches are given up within the idle timeout, and a change made meanwhile is applied once the link is back', async () => {
    await cluster().apply([grid(1)]);
    await until(
      'the controller renders unit a through the relay',
      async () => (await replicasOfUnit()) === 1,
      60_000,
      async () => output.join('').slice(-3000),
    );

    // Quiet first: the writes that follow the render (the grid's status, the discovered NodeUnit
    // and its status) are done, so no request of the controller is in flight when the link hangs.
    await until('the grid status and the NodeUnit of zone=a are written', async () => {
      const g = await admin.get<Obj>(`/apis/servicegroup.io/v1alpha1/namespaces/${ns}/deploymentgrids/web`);
      const u = await admin.get<Obj>('/apis/servicegroup.io/v1alpha1/nodeunits/zone.a').catch(() => undefined);
      return g.status?.observedGeneration === g.metadata.generation && g.status?.totalUnits === 1 && u?.status?.nodeCount === 1;
    });

    relay.hang();
    const dialledBefore = relay.accepted;
    const changedAt = Date.now();
    await admin.mergePatch(`/apis/servicegroup.io/v1alpha1/namespaces/${ns}/deploymentgrids/web`, { spec: { template: { replicas: 3 } } });

    // Without an idle timeout nothing would make the controller dial while its connections are
    // silent: it has no pending request, leader election is off and no resync is due.
    const idleLine = new RegExp(`no data from the apiserver for ${IDLE_SECONDS * 1000} ms`);
    await until('the controller gives up its silent watches', async () => idleLine.test(output.join('')), 60_000);
    await until('and dials again', async () => relay.accepted > dialledBefore, 60_000);
    const noticedMs = Date.now() - changedAt;
    console.error(`[watch] new connection ${noticedMs} ms into the hang (idle timeout ${IDLE_SECONDS}s)`);
    assert.equal(await replicasOfUnit(), 1, 'nothing reached the apiserver from the controller during the hang');

    relay.restore();
    const restoredAt = Date.now();
    await until(
      'the change made during the hang is applied',
      async () => (await replicasOfUnit()) === 3,
      60_000,
      async () => output.join('').slice(-3000),
    );
    console.error(`[watch] change applied ${Date.now() - restoredAt} ms after the link came back`);
  });
});
