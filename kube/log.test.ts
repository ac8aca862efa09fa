import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const logModule = new URL('./log.ts', import.meta.url).pathname;

// The writes are asynchronous: what a process logs right before it exits must still reach stdout.
test('lines logged in a burst right before process.exit are all written, in order, as JSON lines', async () => {
  const script = `
    import { stdoutLogger } from ${JSON.stringify(logModule)};
    const log = stdoutLogger({ base: { component: 'test' } });
    for (let i = 0; i < 2000; i++) log.info({ i, pad: 'x'.repeat(200) }, 'line');
    log.error({ err: new Error('last words') }, 'exiting');
    process.exit(3);
  `;
  const out = await run(process.execPath, ['--input-type=module', '-e', script], { maxBuffer: 64 * 2 ** 20 }).then(
    () => assert.fail('the script exits with 3'),
    (err: { code: number; stdout: string }) => {
      assert.equal(err.code, 3);
      return err.stdout;
    },
  );
  const lines = out
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(lines.length, 2001);
  assert.deepEqual(
    lines.slice(0, 2000).map((l) => l.i),
    Array.from({ length: 2000 }, (_, i) => i),
  );
  assert.equal(lines[0].component, 'test');
  const last = lines[2000];
  assert.equal(last.msg, 'exiting');
  assert.equal(last.err.message, 'last words');
  assert.match(last.err.stack, /Error: last words\n\s+at /, 'the error keeps its stack');
});

// Lines are held for a moment to be written together; a line logged alone must not wait for the
// next one or for the exit.
test('a line logged alone is written within moments, while the process goes on', async () => {
  const script = `
    import { stdoutLogger } from ${JSON.stringify(logModule)};
    const log = stdoutLogger({});
    log.info('first');
    setTimeout(() => { log.info('second'); process.exit(0); }, 1500);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const arrivals: { msg: string; at: number }[] = [];
  let text = '';
  child.stdout.on('data', (c: Buffer) => {
    text += c.toString();
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
      arrivals.push({ msg: JSON.parse(text.slice(0, nl)).msg, at: performance.now() });
      text = text.slice(nl + 1);
    }
  });
  const exitedAt = await new Promise<number>((resolve) => child.on('close', () => resolve(performance.now())));
  assert.deepEqual(
    arrivals.map((a) => a.msg),
    ['first', 'second'],
  );
  assert.ok(exitedAt - arrivals[0]!.at > 1000, `the first line came ${Math.round(exitedAt - arrivals[0]!.at)} ms before the exit`);
});
