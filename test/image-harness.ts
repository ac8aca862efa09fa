// Starting the programs as the image runs them: the container spec of an install manifest (command,
// args, plain env values, readiness probe) applied to an image assembled by cluster/dockerfile.ts,
// with credentials through $KUBECONFIG, every listen address moved to a free loopback port and
// every volume mount path in the args moved to a fresh folder of the test (never the host's own).
// Used by test/image.test.ts and bench/startup.ts.
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { type Cluster, freePort } from './cluster/cluster.ts';
import { type AssembledImage, containerArgv } from './cluster/dockerfile.ts';
import { type Component, waitFor } from './cluster/processes.ts';
import { root } from './controllers-helpers.ts';
import { httpText } from './wrapper-harness.ts';

export interface Container {
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: { httpGet?: { port: number | string; path: string } };
  volumeMounts?: { name: string; mountPath: string }[];
}

/** The first container of the Deployment or DaemonSet in a file of examples/install. */
export async function manifestContainer(file: string): Promise<Container> {
  const docs = k8s.loadAllYaml(await readFile(join(root, 'examples/install', file), 'utf8')) as {
    kind?: string;
    spec?: { template?: { spec?: { containers?: Container[] } } };
  }[];
  const workload = docs.find((d) => d?.kind === 'Deployment' || d?.kind === 'DaemonSet');
  const container = workload?.spec?.template?.spec?.containers?.[0];
  if (!container) throw new Error(`examples/install/${file} has no Deployment or DaemonSet with a container`);
  return container;
}

export interface StartedContainer {
  argv: string[];
  /** Container port → the free loopback port it listens on here. */
  ports: Map<number, number>;
  readyUrl: string;
  /** From spawn until the readiness probe first answered 200. */
  readyMs: number;
  component: Component;
}

/**
 * Starts a container of the image as its manifest does and waits until its readiness probe
 * answers 200. `rewrite` may change the argv (e.g. to run the `.ts` sources instead, for a
 * comparison); `node` is the Node running this process, standing for the base image's.
 */
export async function startContainer(
  cluster: Cluster,
  image: AssembledImage,
  name: string,
  c: Container,
  env: Record<string, string>,
  rewrite: (argv: string[]) => string[] = (argv) => argv,
): Promise<StartedContainer> {
  const ports = new Map<number, number>();
  const args: string[] = [];
  const volumes = await mkdtemp(join(cluster.dir, `${name}-volumes-`));
  const onVolume = (arg: string) => {
    for (const m of c.volumeMounts ?? []) {
      const at = arg.indexOf(`=${m.mountPath}`);
      const rest = arg.slice(at + 1 + m.mountPath.length);
      if (at >= 0 && (rest === '' || rest.startsWith('/'))) return `${arg.slice(0, at + 1)}${join(volumes, m.name)}${rest}`;
    }
    return arg;
  };
  for (const m of c.volumeMounts ?? []) await mkdir(join(volumes, m.name), { recursive: true });
  for (const raw of c.args ?? []) {
    const a = onVolume(raw);
    const m = /^(--[\w-]+=)(?:[\d.]+|\[[^\]]*\])?:(\d+)$/.exec(a);
    if (!m) {
      args.push(a);
      continue;
    }
    const port = await freePort();
    ports.set(Number(m[2]), port);
    args.push(`${m[1]}127.0.0.1:${port}`);
  }
  const argv = rewrite(containerArgv(image, { command: c.command, args }));
  const probe = c.readinessProbe?.httpGet;
  if (!probe) throw new Error(`${name}: the manifest's container has no HTTP readiness probe`);
  const probePort = typeof probe.port === 'number' ? probe.port : c.ports?.find((p) => p.name === probe.port)?.containerPort;
  const localProbePort = probePort === undefined ? undefined : ports.get(probePort);
  if (!localProbePort) throw new Error(`${name}: the readiness probe's port ${probe.port} is not one its args listen on`);
  const containerEnv = Object.fromEntries((c.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
  const [command, ...rest] = argv;
  if (!command) throw new Error(`${name}: the image has no command`);
  const started = performance.now();
  const component = cluster.startProcess(
    name,
    command === 'node' ? process.execPath : command,
    rest,
    { ...image.env, ...containerEnv, ...env },
    { cwd: join(image.root, image.workdir) },
  );
  const readyUrl = `http://127.0.0.1:${localProbePort}${probe.path}`;
  await waitFor(`${name} ${probe.path}`, async () => ((await httpText(readyUrl)).status === 200 ? true : undefined), {
    components: [component],
    timeoutMs: 120_000,
    intervalMs: 20,
  });
  return { argv, ports, readyUrl, readyMs: performance.now() - started, component };
}
