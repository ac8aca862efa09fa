// Start-up of both programs as the image starts them: the plain JavaScript of the image assembled
// from the Dockerfile (without a container engine, test/cluster/dockerfile.ts), started with the
// command and args of its install manifest, against the same command on the TypeScript sources
// (what development runs: types stripped at every start). For each: time from spawn until the
// readiness probe answers 200, RSS then, and RSS after --idle-seconds more; medians of --runs.
//   --runs 3 --idle-seconds 5 --out f.json
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { startCluster } from '../test/cluster/cluster.ts';
import { assembleImage } from '../test/cluster/dockerfile.ts';
import { installCrds, installRbac } from '../test/controllers-helpers.ts';
import { type Container, manifestContainer, startContainer } from '../test/image-harness.ts';
import { installWrapperRbac } from '../test/wrapper-harness.ts';
import { machine, procStats, root, wholeNumber, writeJson } from './lib.ts';
import { median, printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    'idle-seconds': { type: 'string', default: '5' },
    out: { type: 'string' },
  },
});
const runs = wholeNumber(values.runs, '--runs');
const idleMs = wholeNumber(values['idle-seconds'], '--idle-seconds') * 1000;

/** The same argv on the sources: `<program>/main.js` of the image becomes the repository's `<program>/main.ts`. */
const onSources = (argv: string[]) => argv.map((a) => (/^[\w-]+\/main\.js$/.test(a) ? join(root, a.replace(/\.js$/, '.ts')) : a));

interface Sample {
  readyMs: number;
  rssReadyMiB: number;
  rssIdleMiB: number;
}

async function main() {
  const load = loadavg()[0]!;
  const dir = await mkdtemp(join(tmpdir(), 'servicegroup-startup-'));
  const cluster = await startCluster();
  try {
    let t = performance.now();
    const image = await assembleImage({ dockerfile: join(root, 'Dockerfile'), context: root, dir, toolsPath: dirname(process.execPath) });
    console.error(`[bench] image assembled in ${((performance.now() - t) / 1000).toFixed(0)} s`);
    await installCrds(cluster);
    const controllerKubeconfig = await installRbac(cluster);
    const wrapperKubeconfig = await installWrapperRbac(cluster);
    await cluster.apply([{ apiVersion: 'v1', kind: 'Node', metadata: { name: 'startup-node', labels: { zone: 'a' } } }]);

    const programs: { name: string; container: Container; env: Record<string, string> }[] = [
      { name: 'controller', container: await manifestContainer('controller.yaml'), env: { KUBECONFIG: controllerKubeconfig } },
      {
        name: 'wrapper',
        container: await manifestContainer('wrapper.yaml'),
        env: { KUBECONFIG: wrapperKubeconfig, NODE_NAME: 'startup-node' },
      },
    ];
    const results: Record<string, { argv: string[]; samples: Sample[] }> = {};
    let n = 0;
    for (let run = 0; run < runs; run++) {
      for (const p of programs) {
        for (const [form, rewrite] of [
          ['JavaScript (image)', (a: string[]) => a],
          ['TypeScript sources', onSources],
        ] as const) {
          t = performance.now();
          const started = await startContainer(cluster, image, `${p.name}-${++n}`, p.container, p.env, rewrite);
          const pid = started.component.child.pid!;
          const rssReadyMiB = procStats(pid).rssMiB;
          await new Promise((r) => setTimeout(r, idleMs));
          const rssIdleMiB = procStats(pid).rssMiB;
          await started.component.stop();
          const key = `${p.name}, ${form}`;
          results[key] ??= { argv: started.argv, samples: [] };
          results[key].samples.push({ readyMs: started.readyMs, rssReadyMiB, rssIdleMiB });
        }
      }
    }
    const med = (xs: number[], digits: number) => median(xs).toFixed(digits);
    printTable(
      `start-up as the image starts the programs, median of ${runs} (${machine()}; load ${load.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after)`,
      ['program', 'spawn → ready', 'RSS at ready', `RSS ${idleMs / 1000} s later`],
      Object.entries(results).map(([key, r]) => [
        key,
        `${med(
          r.samples.map((s) => s.readyMs),
          0,
        )} ms`,
        `${med(
          r.samples.map((s) => s.rssReadyMiB),
          1,
        )} MiB`,
        `${med(
          r.samples.map((s) => s.rssIdleMiB),
          1,
        )} MiB`,
      ]),
    );
    writeJson(values.out, {
      benchmark: 'startup',
      machine: machine(),
      date: new Date().toISOString(),
      loadAverage1m: { before: load, after: loadavg()[0] },
      results,
    });
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
