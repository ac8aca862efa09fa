import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { liveBytes } from '../test/live-memory.ts';
import { seededRandom } from '../test/seeded-random.ts';
import { RvClock } from './rv-clock.ts';
import { decodeState, encodeState, SnapshotScheduler, StateStore } from './state.ts';

const RESOURCES = ['services', 'endpointslices', 'endpoints', 'nodes', 'servicecidrs'];
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'wrapper-state-'));
  dirs.push(d);
  return d;
};

/** A logger whose lines a test can read. */
function recordingLog() {
  const lines: { msg: string; err?: { message: string }; [k: string]: unknown }[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

const svc = (name: string) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'ns' }, spec: { clusterIP: '10.0.0.1' } });
const objects = (n: number, tag: string): [string, string][] =>
  Array.from({ length: n }, (_, i) => ['services', JSON.stringify(svc(`${tag}-${i}`))]);

test('a snapshot round-trips: header, meta and every object in order', () => {
  const buf = encodeState('n1', 7, { version: { gitVersion: 'v1.35.0' }, lastContact: 123 }, objects(3, 'a'));
  const s = decodeState(buf, 'n1', 'f', new Set(RESOURCES));
  assert.equal(s.header.generation, 7);
  assert.equal(s.header.node, 'n1');
  assert.deepEqual(s.meta, { version: { gitVersion: 'v1.35.0' }, lastContact: 123 });
  assert.deepEqual(
    s.objects.map((o) => o.object.metadata.name),
    ['a-0', 'a-1', 'a-2'],
  );
});

test('another node, another format version, an unknown resource: refused with the reason', () => {
  const known = new Set(RESOURCES);
  assert.throws(() => decodeState(encodeState('n2', 1, {}, []), 'n1', 'f', known), /state of node "n2", not of this node "n1"/);
  const v0 = encodeState('n1', 1, {}, []).toString().replace('"version":1,', '"version":0,');
  assert.throws(() => decodeState(Buffer.from(v0), 'n1', 'f', known), /state format version 0 is not supported/);
  assert.throws(
    () => decodeState(encodeState('n1', 1, {}, [['pods', '{"metadata":{"name":"p"}}']]), 'n1', 'f', known),
    /unknown resource "pods"/,
  );
});

test('the store saves generations, keeps the previous one, and loads the newest', async () => {
  const dir = tempDir();
  const { log } = recordingLog();
  const store = new StateStore({ dir, node: 'n1', log, resources: RESOURCES });
  assert.equal(store.load(), undefined);
  for (let i = 1; i <= 4; i++) assert.equal(await store.save({ lastContact: i }, objects(2, `g${i}`)), true);
  assert.deepEqual(readdirSync(dir).sort(), ['snapshot.3', 'snapshot.4']);
  // What a crash in the middle of a write leaves: never read, removed.
  writeFileSync(join(dir, 'snapshot.5.tmp'), '{"sha256":"');
  const loaded = new StateStore({ dir, node: 'n1', log, resources: RESOURCES }).load();
  assert.equal(loaded?.header.generation, 4);
  assert.equal(loaded?.objects[0]?.object.metadata.name, 'g4-0');
  assert.deepEqual(readdirSync(dir).sort(), ['snapshot.3', 'snapshot.4']);
});

test('60 random corruptions of the newest generation: never served; the previous generation is, with a log line', async () => {
  const dir = tempDir();
  const setup = new StateStore({ dir, node: 'n1', log: recordingLog().log, resources: RESOURCES });
  await setup.save({ lastContact: 1 }, objects(20, 'prev'));
  await setup.save({ lastContact: 2 }, objects(20, 'newest'));
  const newest = join(dir, 'snapshot.2');
  const good = readFileSync(newest);
  const kinds = ['truncate', 'flip', 'garbage', 'older-version', 'other-node', 'extend'] as const;
  const seen = new Map<string, number>();
  for (let seed = 1; seed <= 60; seed++) {
    const rnd = seededRandom(seed);
    const kind = kinds[seed % kinds.length]!;
    let bad: Buffer;
    switch (kind) {
      case 'truncate':
        bad = good.subarray(0, Math.floor(rnd() * good.length));
        break;
      case 'flip': {
        bad = Buffer.from(good);
        const flips = 1 + Math.floor(rnd() * 4);
        for (let i = 0; i < flips; i++) {
          const at = Math.floor(rnd() * bad.length);
          bad[at]! ^= 1 << Math.floor(rnd() * 8);
        }
        break;
      }
      case 'garbage':
        bad = Buffer.from(Array.from({ length: Math.floor(rnd() * 5000) }, () => Math.floor(rnd() * 256)));
        break;
      case 'older-version':
        bad = encodeState('n1', 2, {}, objects(20, 'newest'));
        bad = Buffer.from(bad.toString().replace('"version":1,', `"version":${[0, 2, 99][Math.floor(rnd() * 3)]},`));
        break;
      case 'other-node':
        bad = encodeState(`n${2 + Math.floor(rnd() * 100)}`, 2, {}, objects(20, 'newest'));
        break;
      case 'extend':
        bad = Buffer.concat([good, Buffer.from(`services\t${JSON.stringify(svc('smuggled'))}\n`)]);
        break;
    }
    writeFileSync(newest, bad);
    const { log, lines } = recordingLog();
    const loaded = new StateStore({ dir, node: 'n1', log, resources: RESOURCES }).load();
    assert.equal(loaded?.header.generation, 1, `seed ${seed} (${kind}): the previous generation is served`);
    assert.ok(
      loaded.objects.every((o) => o.object.metadata.name.startsWith('prev-')),
      `seed ${seed} (${kind})`,
    );
    const why = lines.find((l) => l.msg === 'saved state unusable; trying an older generation');
    assert.ok(why?.err?.message.includes('snapshot.2'), `seed ${seed} (${kind}): the log names the file and the defect`);
    seen.set(why!.err!.message.replace(/^.*snapshot\.2: /, '').replace(/[\d"a-f]{6,}.*$/, ''), 1);
  }
  // The corruptions hit different checks (length, checksum, header, version, node).
  assert.ok(seen.size >= 4, [...seen.keys()].join(' | '));
});

test('with every generation unusable, nothing is served and the log says so', async () => {
  const dir = tempDir();
  const setup = new StateStore({ dir, node: 'n1', log: recordingLog().log, resources: RESOURCES });
  await setup.save({}, objects(3, 'x'));
  writeFileSync(join(dir, 'snapshot.1'), readFileSync(join(dir, 'snapshot.1')).subarray(0, 50));
  const { log, lines } = recordingLog();
  assert.equal(new StateStore({ dir, node: 'n1', log, resources: RESOURCES }).load(), undefined);
  assert.ok(lines.some((l) => l.msg.startsWith('no usable saved state')));
});

test('a write that fails (missing directory) is reported and never throws', async () => {
  const { log, lines } = recordingLog();
  let failures = 0;
  const store = new StateStore({
    dir: join(tempDir(), 'missing'),
    node: 'n1',
    log,
    resources: RESOURCES,
    metrics: { stateWritten() {}, stateWriteFailed: () => failures++ },
  });
  assert.equal(await store.save({}, objects(1, 'a')), false);
  assert.equal(await store.save({}, objects(1, 'a')), false);
  assert.equal(failures, 2);
  assert.equal(lines.filter((l) => l.msg.startsWith('cannot save state')).length, 1, 'a persisting failure is logged once');
  assert.equal(store.saveRvCeiling(5), false);
});

test('resourceVersions after a restart stay above every one issued before, even past the wall clock', () => {
  const dir = tempDir();
  const store = new StateStore({ dir, node: 'n1', log: recordingLog().log, resources: RESOURCES });
  const now = 1_000;
  const first = new RvClock(now, { floor: store.loadRvCeiling(), reserve: (c) => store.saveRvCeiling(c), block: 100 });
  let last = 0;
  for (let i = 0; i < 1_050; i++) last = first.next(); // ten blocks past the reservation
  // A restart in the same millisecond (or after the clock stepped back).
  const second = new RvClock(now, { floor: store.loadRvCeiling(), reserve: (c) => store.saveRvCeiling(c), block: 100 });
  assert.ok(second.start > last, `${second.start} > ${last}`);
  assert.ok(second.next() > last);
  // Without a usable mark the wall clock decides.
  writeFileSync(join(dir, 'resourceversion'), 'garbage');
  assert.equal(store.loadRvCeiling(), 0);
});

test('the scheduler coalesces changes into one snapshot per interval and retries a failed one', async () => {
  let writes = 0;
  let fail = true;
  const s = new SnapshotScheduler(60_000, async () => {
    writes++;
    return !fail;
  });
  await s.flush();
  assert.equal(writes, 0, 'nothing changed: nothing written');
  for (let i = 0; i < 1000; i++) s.changed();
  await s.flush();
  assert.equal(writes, 1);
  fail = false;
  await s.flush();
  assert.equal(writes, 2, 'a failed write is retried');
  await s.flush();
  assert.equal(writes, 2);
  s.stop();
});

test('the resource names of a decoded state do not keep its body text alive', async () => {
  const before = await liveBytes();
  // 20 MiB of objects under a resource name long enough that a slice of the text would share it.
  const decodedNames = () => {
    const big = 'x'.repeat(10_000);
    const parts: [string, string][] = Array.from({ length: 2_000 }, (_, i) => [
      'endpointslices',
      JSON.stringify({ metadata: { name: `s-${i}`, namespace: 'ns' }, big }),
    ]);
    const state = decodeState(encodeState('n1', 1, {}, parts), 'n1', 'f', new Set(['endpointslices']));
    return state.objects.map((o) => o.resource);
  };
  const names = decodedNames();
  const grown = (await liveBytes()) - before;
  assert.equal(names.length, 2_000);
  assert.ok(grown < 4 * 1048576, `${(grown / 1048576).toFixed(1)} MiB kept alive by 2,000 resource names`);
});

test('a snapshot is written in parts: the same bytes as the joined encoding', async () => {
  const dir = tempDir();
  const store = new StateStore({ dir, node: 'n1', log: recordingLog().log, resources: RESOURCES });
  const many: [string, string | Buffer][] = Array.from({ length: 3_000 }, (_, i) =>
    i % 2 ? ['services', JSON.stringify(svc(`s-${i}`))] : ['services', Buffer.from(JSON.stringify(svc(`b-${i}`)))],
  );
  assert.equal(await store.save({ lastContact: 1 }, many), true);
  const written = readFileSync(join(dir, 'snapshot.1'));
  const header = JSON.parse(written.toString('utf8', 0, written.indexOf(0x0a)));
  const expected = encodeState('n1', 1, { lastContact: 1 }, many, new Date(header.writtenAt));
  assert.ok(written.equals(expected), 'written file differs from the joined encoding');
  assert.equal(store.load()?.objects.length, 3_000);
});
