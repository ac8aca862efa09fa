// `npm run bench`: every benchmark, one after the other, against fresh local clusters. Each prints
// its table and writes its figures to <out-dir>/<name>.json. Flags after `--` are passed to the
// scripts that take them, so another implementation can be measured on the same harness:
//   --wrapper-cmd / --wrapper-url        wrapper benchmarks (see bench/wrapper-latency.ts)
//   --controller-cmd, --no-readyz, --no-status   controller benchmark (see bench/controllers.ts)
//   --as-image                           this project's controller as the image starts it (bench/controllers.ts)
//   npm run bench [-- --only wrapper-latency,controllers] [--out-dir bench-results]
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    'out-dir': { type: 'string', default: 'bench-results' },
    'wrapper-cmd': { type: 'string' },
    'wrapper-url': { type: 'string' },
    'controller-cmd': { type: 'string' },
    'no-readyz': { type: 'boolean' },
    'no-status': { type: 'boolean' },
    'as-image': { type: 'boolean' },
  },
});

type Passed = 'wrapper-cmd' | 'wrapper-url' | 'controller-cmd' | 'no-readyz' | 'no-status' | 'as-image';

const benchmarks: { name: string; passes: Passed[] }[] = [
  { name: 'cluster-start', passes: [] },
  { name: 'wrapper-latency', passes: ['wrapper-cmd', 'wrapper-url'] },
  { name: 'wrapper-scale', passes: ['wrapper-cmd', 'wrapper-url'] },
  { name: 'wrapper-nodes', passes: ['wrapper-cmd'] },
  { name: 'wrapper-cpu', passes: [] },
  { name: 'wrapper-watches', passes: ['wrapper-cmd', 'wrapper-url'] },
  { name: 'wrapper-state', passes: ['wrapper-cmd'] },
  { name: 'controllers', passes: ['controller-cmd', 'no-readyz', 'no-status', 'as-image'] },
  { name: 'write-floor', passes: [] },
  { name: 'startup', passes: [] },
];
const only = values.only?.split(',');
mkdirSync(values['out-dir'], { recursive: true });
let failed = 0;
for (const b of benchmarks) {
  if (only && !only.includes(b.name)) continue;
  const args = [join(here, `${b.name}.ts`), `--out=${join(values['out-dir'], `${b.name}.json`)}`];
  for (const flag of b.passes) {
    const v = values[flag];
    if (v === true) args.push(`--${flag}`);
    else if (typeof v === 'string') args.push(`--${flag}=${v}`);
  }
  console.error(`\n[bench] ${b.name}`);
  const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`[bench] ${b.name} failed (exit ${r.status ?? r.signal})`);
  }
}
process.exit(failed ? 1 : 0);
