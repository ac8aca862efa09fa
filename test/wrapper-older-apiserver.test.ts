// The wrapper against an apiserver of an older Kubernetes: kube-apiserver emulating 1.32, which
// does not serve networking.k8s.io/v1 ServiceCIDRs (GA in 1.33). The wrapper must still become
// ready and serve kube-proxy, with ServiceCIDRs as an empty collection.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { KubeClient } from '../kube/client.ts';
import { loadKubeconfig } from '../kube/kubeconfig.ts';
import { useCluster } from './cluster/cluster.ts';
import { getIfExists } from './controllers-helpers.ts';
import { httpText, installWrapperRbac, type RunningWrapper, startWrapper } from './wrapper-harness.ts';

const cluster = useCluster({ apiserverArgs: ['--emulated-version=1.32'] });

describe('the wrapper and an apiserver of Kubernetes 1.32', () => {
  let wrapper: RunningWrapper | undefined;

  after(async () => {
    await wrapper?.stop();
  });

  test('without networking.k8s.io/v1 ServiceCIDRs the wrapper is ready, serves them empty, and serves Services', async () => {
    const c = cluster();
    const admin = new KubeClient(loadKubeconfig(c.adminKubeconfigPath));
    try {
      const version = await admin.get<{ minor: string; emulationMinor?: string }>('/version');
      assert.equal(version.emulationMinor ?? version.minor, '32', JSON.stringify(version));
      await assert.rejects(admin.get('/apis/networking.k8s.io/v1/servicecidrs'), /404/, 'this apiserver does not serve them');
      await c.apply([
        { apiVersion: 'v1', kind: 'Service', metadata: { name: 'old', namespace: 'default' }, spec: { ports: [{ port: 80 }] } },
      ]);
      const kubeconfig = await installWrapperRbac(c);
      // startWrapper waits for /readyz: every cache synced.
      wrapper = await startWrapper(c, { nodeName: 'n1', kubeconfig });
      const cidrs = await httpText(`${wrapper.url}/apis/networking.k8s.io/v1/servicecidrs`);
      assert.equal(cidrs.status, 200, cidrs.body);
      assert.deepEqual(JSON.parse(cidrs.body).items, []);
      const services = await httpText(`${wrapper.url}/api/v1/namespaces/default/services`);
      assert.equal(services.status, 200, services.body);
      assert.ok(
        (JSON.parse(services.body).items as { metadata: { name: string } }[]).some((s) => s.metadata.name === 'old'),
        services.body,
      );
      assert.ok(await getIfExists(admin, '/api/v1/namespaces/default/services/old'));
    } finally {
      admin.close();
    }
  });
});
