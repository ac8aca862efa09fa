// The image recipe, without a container engine: the Dockerfile's stages are performed in a temp
// folder (real `npm ci`, the files it copies, the build), then both programs are started from the
// result exactly as the install manifests start the image (their command and args, loopback ports
// swapped for free ones, credentials through $KUBECONFIG) against a real apiserver. A Dockerfile,
// build or manifest that would ship a broken image fails here.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { useCluster } from './cluster/cluster.ts';
import { type AssembledImage, assembleImage, containerArgv } from './cluster/dockerfile.ts';
import { waitFor } from './cluster/processes.ts';
import { deploymentGrid, installCrds, installRbac, root } from './controllers-helpers.ts';
import { manifestContainer, startContainer } from './image-harness.ts';
import { httpText, installWrapperRbac } from './wrapper-harness.ts';

const cluster = useCluster();
const ns = 'image';
// The wrapper's API port, part of the public contract (kube-proxy is pointed at it).
const WRAPPER_PORT = 51006;

/** Every file under `dir`, relative to it, skipping node_modules. */
async function filesOf(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.name === 'node_modules') continue;
    if (e.isDirectory()) out.push(...(await filesOf(dir, rel)));
    else out.push(rel);
  }
  return out;
}

describe('the image, assembled from the Dockerfile without a container engine', () => {
  let image: AssembledImage;

  before(
    async () => {
      image = await assembleImage({
        dockerfile: join(root, 'Dockerfile'),
        context: root,
        dir: join(cluster().dir, 'image'),
        toolsPath: dirname(process.execPath),
        log: process.env.LOG_LEVEL === 'debug' ? (t) => process.stderr.write(t) : undefined,
      });
    },
    { timeout: 15 * 60_000 },
  );

  test('ships plain JavaScript, production dependencies only, and runs as a non-root user', async () => {
    const files = await filesOf(join(image.root, image.workdir));
    assert.deepEqual(
      files.filter((f) => f.endsWith('.ts')),
      [],
      'no TypeScript is left to strip at start',
    );
    assert.ok(files.includes('controllers/main.js') && files.includes('wrapper/main.js'), `entry points in ${files.join(', ')}`);
    // The lockfile marks what only development needs (`dev: true`), transitive packages included;
    // a devDependency that a production package also requires (@types/node) is rightly shipped.
    const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const devOnly = Object.entries(lock.packages)
      .filter(([path, p]) => p.dev && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path))
      .map(([path]) => path);
    assert.ok(devOnly.includes('node_modules/typescript'), 'the lockfile marks development packages');
    for (const path of devOnly) assert.ok(!existsSync(join(image.root, image.workdir, path)), `${path} is not shipped`);
    assert.ok(image.user && !/^(0|root)(:|$)/.test(image.user), `USER ${image.user} is not root`);
    assert.equal(image.env.NODE_ENV, 'production');
  });

  test("the image's default command is the controller's, as its Deployment runs it", async () => {
    const controller = await manifestContainer('controller.yaml');
    assert.deepEqual(containerArgv(image), controller.command ?? containerArgv(image));
  });

  test('the controller, started as its Deployment starts the image, reconciles a grid', async () => {
    const c = cluster();
    await installCrds(c);
    const kubeconfig = await installRbac(c);
    await c.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }]);
    for (const [node, zone] of [
      ['image-a', 'a'],
      ['image-b', 'b'],
    ]) {
      await c.apply([{ apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: { zone } } }]);
    }
    const started = await startContainer(c, image, 'controller-from-image', await manifestContainer('controller.yaml'), {
      KUBECONFIG: kubeconfig,
    });
    assert.match(started.argv.join(' '), /controllers\/main\.js/);

    await c.apply([deploymentGrid('web', ns, { replicas: 1, container: 'web', image: 'example/web:1' })]);
    const grid = await waitFor(
      'the grid rendered for both units, with status',
      async () => {
        const r = await c.kubectl(['get', 'deploymentgrid', 'web', '-n', ns, '-o', 'json']);
        if (r.code !== 0) return undefined;
        const g = JSON.parse(r.stdout);
        return g.status?.totalUnits === 2 && g.status?.observedGeneration === g.metadata.generation ? g : undefined;
      },
      { timeoutMs: 120_000 },
    );
    assert.deepEqual((grid.status.units as { name: string }[]).map((u) => u.name).sort(), ['a', 'b']);
    const deployments = await c.kubectl(['get', 'deployments', '-n', ns, '-l', 'servicegroup.io/grid=web', '-o', 'name']);
    assert.equal(deployments.stdout.trim().split('\n').length, 2, deployments.stdout);
  });

  test('the wrapper, started as its DaemonSet starts the image, serves /readyz and EndpointSlices', async () => {
    const c = cluster();
    const kubeconfig = await installWrapperRbac(c);
    const started = await startContainer(c, image, 'wrapper-from-image', await manifestContainer('wrapper.yaml'), {
      KUBECONFIG: kubeconfig,
      NODE_NAME: 'image-a',
    });
    assert.match(started.argv.join(' '), /wrapper\/main\.js/);
    const port = started.ports.get(WRAPPER_PORT);
    assert.ok(port, `the wrapper listens on ${WRAPPER_PORT} in its manifest`);
    const list = await httpText(`http://127.0.0.1:${port}/apis/discovery.k8s.io/v1/endpointslices`);
    assert.equal(list.status, 200, list.body);
    assert.equal(JSON.parse(list.body).kind, 'EndpointSliceList');
  });
});
