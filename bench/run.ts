// `npm run bench`: every benchmark, one after the other, against fresh local clusters. Each prints
// its table and writes its figures to <out-dir>/<name>.json. Flags after `--` are passed to the
// scripts that take them: --wrapper-cmd / --wrapper-url (wrapper benchmarks), --controller-cmd
// (controller benchmark), so another implementation can be measured on the same harness.
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
  },
});

const benchmarks: { name: string; passes: ('wrapper-cmd' | 'wrapper-url' | 'controller-cmd')[] }[] = [
  { name: 'cluster-start', passes: [] },
  { name: 'wrapper-latency', passes: ['wrapper-cmd', 'wrapper-url'] },
  { name: 'wrapper-scale', passes: ['wrapper-cmd', 'wrapper-url'] },
  { name: 'wrapper-watches', passes: ['wrapper-cmd', 'wrapper-url'] },
  { name: 'wrapper-state', passes: ['wrapper-cmd'] },
  { name: 'controllers', passes: ['controller-cmd'] },
];
const only = values.only?.split(',');
mkdirSync(values['out-dir'], { recursive: true });
let failed = 0;
for (const b of benchmarks) {
  if (only && !only.includes(b.name)) continue;
  const args = [join(here, `${b.name}.ts`), `--out=${join(values['out-dir'], `${b.name}.json`)}`];
  for (const flag of b.passes) if (values[flag]) args.push(`--${flag}=${values[flag]}`);
  console.error(`\n[bench] ${b.name}`);
  const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`[bench] ${b.name} failed (exit ${r.status ?? r.signal})`);
  }
}
process.exit(failed ? 1 : 0);
