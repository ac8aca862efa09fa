// The wrapper's durable state: what it needs to serve its node while the apiserver cannot be
// reached, kept on local disk so that it survives a wrapper restart or an offline reboot.
//
// A snapshot file is one header line and a body:
//   {"sha256":H,"format":"application-grid-wrapper-state","version":1,"node":N,"generation":G,
//    "writtenAt":ISO,"bodyBytes":B}\n
//   {"version":<the apiserver's /version answer>,"lastContact":<ms>}\n
//   <resource>\t<upstream object as JSON>\n   (one line per object)
// The header names the node (a state copied from another node is never served), the format
// version (an unknown layout is never guessed at), the body's length, and the SHA-256 of every
// byte after the hash itself, header fields included (a torn or bit-rotten file is never served).
//
// Writes are crash-safe: each generation goes to a temporary file that is fsynced, renamed to
// `snapshot.<G>` and made durable by an fsync of the directory; only then is the generation
// before the previous one removed. At any moment the directory holds the newest complete
// generation and, normally, the one before it, which a reader falls back to.
//
// Write cost is bounded by coalescing: changes only mark the state dirty, and at most one
// snapshot per interval is written, off the request path, however fast the upstream churns.
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { chunksOf } from './chunks.ts';

export const STATE_FORMAT = 'application-grid-wrapper-state';
export const STATE_VERSION = 1;
const SNAPSHOT = /^snapshot\.(\d+)$/;
const RV_FILE = 'resourceversion';
/** A header longer than this is not ours; never read a whole garbage file looking for a newline. */
const MAX_HEADER_BYTES = 4096;

export interface StateHeader {
  format: string;
  version: number;
  node: string;
  generation: number;
  writtenAt: string;
  bodyBytes: number;
  sha256: string;
}

/** What a snapshot holds besides the objects. */
export interface StateMeta {
  /** The apiserver's answer to GET /version, served to clients while it cannot be asked. */
  version?: unknown;
  /** When the wrapper last heard from the apiserver (ms since the epoch). */
  lastContact?: number;
}

export interface SavedState {
  file: string;
  header: StateHeader;
  meta: StateMeta;
  /** Upstream objects, parsed, in the order they were saved. */
  objects: { resource: string; object: { metadata: { name: string; namespace?: string } } & Record<string, unknown> }[];
}

/** Why a state file cannot be used; the message names the file and the defect. */
export class StateError extends Error {}

/**
 * A snapshot ready to be written: its parts in order and their length in bytes. The parts are the
 * objects as the view holds them (no copy), hashed one by one: a snapshot never needs a second
 * copy of the whole state in memory, only one chunk at a time while it is written.
 */
export interface EncodedState {
  parts: (string | Buffer)[];
  bytes: number;
}

const byteLength = (p: string | Buffer) => (typeof p === 'string' ? Buffer.byteLength(p) : p.length);

/** Encodes a snapshot: header line, meta line, one `resource\tjson` line per object. */
export function encodeStateParts(
  node: string,
  generation: number,
  meta: StateMeta,
  objects: Iterable<[resource: string, json: string | Buffer]>,
  now = new Date(),
): EncodedState {
  const body: (string | Buffer)[] = [`${JSON.stringify(meta)}\n`];
  for (const [resource, json] of objects) body.push(`${resource}\t`, json, '\n');
  let bodyBytes = 0;
  for (const p of body) bodyBytes += byteLength(p);
  const fields = { format: STATE_FORMAT, version: STATE_VERSION, node, generation, writtenAt: now.toISOString(), bodyBytes };
  const rest = `${JSON.stringify(fields).slice(1)}\n`;
  const hash = createHash('sha256').update(rest);
  for (const p of body) hash.update(p);
  const head = `${HASH_PREFIX}${hash.digest('hex')}",`;
  return { parts: [head, rest, ...body], bytes: byteLength(head) + byteLength(rest) + bodyBytes };
}

/** The bytes of a snapshot, joined (small states and tests). */
export function encodeState(...args: Parameters<typeof encodeStateParts>): Buffer {
  const { parts, bytes } = encodeStateParts(...args);
  return Buffer.concat(
    parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)),
    bytes,
  );
}

const HASH_PREFIX = '{"sha256":"';
/** Where the hashed bytes start: after `{"sha256":"<64 hex digits>",`. */
const HASHED_FROM = HASH_PREFIX.length + 64 + 2;

/** Reads and checks the header of a state file's bytes (format, version, node, length, checksum). */
function decodeHeader(buf: Buffer, node: string, file: string): { header: StateHeader; bodyStart: number } {
  const nl = buf.subarray(0, MAX_HEADER_BYTES).indexOf(0x0a);
  if (nl < 0) throw new StateError(`${file}: not a wrapper state file (no header line)`);
  let header: StateHeader;
  try {
    header = JSON.parse(buf.toString('utf8', 0, nl)) as StateHeader;
  } catch {
    throw new StateError(`${file}: not a wrapper state file (header is not JSON)`);
  }
  if (header === null || typeof header !== 'object' || header.format !== STATE_FORMAT) {
    throw new StateError(`${file}: not a wrapper state file (format ${JSON.stringify((header as StateHeader | null)?.format)})`);
  }
  if (header.version !== STATE_VERSION) {
    throw new StateError(
      `${file}: state format version ${JSON.stringify(header.version)} is not supported (this wrapper reads version ${STATE_VERSION})`,
    );
  }
  if (header.node !== node) {
    throw new StateError(`${file}: state of node ${JSON.stringify(header.node)}, not of this node ${JSON.stringify(node)}`);
  }
  if (!Number.isSafeInteger(header.bodyBytes) || !Number.isSafeInteger(header.generation)) {
    throw new StateError(`${file}: header lacks bodyBytes or generation`);
  }
  const body = buf.length - nl - 1;
  if (body !== header.bodyBytes) {
    throw new StateError(`${file}: truncated or extended: body has ${body} bytes, header says ${header.bodyBytes}`);
  }
  if (buf.toString('latin1', 0, HASH_PREFIX.length) !== HASH_PREFIX || buf.toString('latin1', HASHED_FROM - 2, HASHED_FROM) !== '",') {
    throw new StateError(`${file}: header does not start with its checksum`);
  }
  const sum = createHash('sha256').update(buf.subarray(HASHED_FROM)).digest('hex');
  if (sum !== header.sha256) throw new StateError(`${file}: checksum mismatch (sha256 ${sum}, header says ${header.sha256})`);
  return { header, bodyStart: nl + 1 };
}

/** Decodes a state file's bytes; throws a StateError saying what is wrong. */
export function decodeState(buf: Buffer, node: string, file: string, knownResources: ReadonlySet<string>): SavedState {
  const { header, bodyStart } = decodeHeader(buf, node, file);
  const text = buf.toString('utf8', bodyStart);
  let at = text.indexOf('\n');
  if (at < 0) throw new StateError(`${file}: body has no meta line`);
  let meta: StateMeta;
  try {
    meta = JSON.parse(text.slice(0, at)) as StateMeta;
  } catch {
    throw new StateError(`${file}: meta line is not JSON`);
  }
  const objects: SavedState['objects'] = [];
  // The resource names handed out are the known ones, never slices of `text`: a slice would keep
  // the whole body text alive for as long as the name is kept.
  const names = new Map([...knownResources].map((r) => [r, r]));
  let line = 2;
  for (let start = at + 1; start < text.length; start = at + 1, line++) {
    at = text.indexOf('\n', start);
    if (at < 0) throw new StateError(`${file}: line ${line} is not terminated`);
    const tab = text.indexOf('\t', start);
    const named = tab > start && tab < at ? text.slice(start, tab) : '';
    const resource = names.get(named);
    if (resource === undefined) throw new StateError(`${file}: line ${line}: unknown resource ${JSON.stringify(named)}`);
    let object: SavedState['objects'][number]['object'];
    try {
      object = JSON.parse(text.slice(tab + 1, at));
    } catch {
      throw new StateError(`${file}: line ${line}: object is not JSON`);
    }
    if (typeof object?.metadata?.name !== 'string') throw new StateError(`${file}: line ${line}: object has no metadata.name`);
    objects.push({ resource, object });
  }
  return { file, header, meta, objects };
}

const fsyncDir = async (dir: string) => {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
};

/**
 * Replaces `dir/name` with `data` so that a crash at any moment leaves either the old or the new
 * content under that name: temporary file, fsync, rename, fsync of the directory.
 */
export async function writeFileDurably(dir: string, name: string, data: Buffer | EncodedState): Promise<void> {
  const tmp = join(dir, `${name}.tmp`);
  const f = await open(tmp, 'w', 0o600);
  try {
    await f.writeFile(Buffer.isBuffer(data) ? data : chunksOf(data.parts));
    await f.sync();
  } catch (err) {
    await f.close().catch(() => {});
    // A full disk must not keep a half-written temporary file that takes the remaining space.
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await f.close();
  await rename(tmp, join(dir, name));
  await fsyncDir(dir);
}

/** writeFileDurably, synchronous: for the few bytes that must be on disk before the wrapper goes on. */
export function writeFileDurablySync(dir: string, name: string, data: Buffer): void {
  const tmp = join(dir, `${name}.tmp`);
  const fd = openSync(tmp, 'w', 0o600);
  let written = false;
  try {
    writeSync(fd, data);
    fsyncSync(fd);
    written = true;
  } finally {
    closeSync(fd);
    if (!written) {
      try {
        unlinkSync(tmp);
      } catch {}
    }
  }
  renameSync(tmp, join(dir, name));
  const d = openSync(dir, 'r');
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

export interface StateMetrics {
  stateWritten(bytes: number, seconds: number): void;
  stateWriteFailed(): void;
}

export interface StateStoreOptions {
  dir: string;
  node: string;
  log: Logger;
  resources: readonly string[];
  metrics?: StateMetrics;
}

/** The snapshot generations in a state directory, and the resourceVersion high-water mark. */
export class StateStore {
  readonly dir: string;
  readonly node: string;
  private readonly log: Logger;
  private readonly resources: ReadonlySet<string>;
  private readonly metrics: StateMetrics | undefined;
  /** The generation the next snapshot gets: above every one found on disk. */
  private nextGeneration = 1;
  /** The last write failure's message, so a persisting failure is logged once, not per attempt. */
  private failing: string | undefined;

  constructor(o: StateStoreOptions) {
    this.dir = o.dir;
    this.node = o.node;
    this.log = o.log;
    this.resources = new Set(o.resources);
    this.metrics = o.metrics;
  }

  /** Snapshot generations on disk, newest first. */
  private generations(): number[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err, dir: this.dir }, 'cannot read the state directory');
      return [];
    }
    return names
      .map((n) => SNAPSHOT.exec(n)?.[1])
      .filter((g): g is string => g !== undefined)
      .map(Number)
      .sort((a, b) => b - a);
  }

  /** A write interrupted by a crash leaves its temporary file: never read, and it takes space. */
  private removeTemporaryFiles(): void {
    let names: string[] = [];
    try {
      names = readdirSync(this.dir);
    } catch {}
    for (const name of names) {
      if (!name.endsWith('.tmp')) continue;
      try {
        unlinkSync(join(this.dir, name));
        this.log.info({ file: join(this.dir, name) }, 'removed the temporary file of an interrupted write');
      } catch (err) {
        this.log.warn({ err, file: join(this.dir, name) }, 'cannot remove the temporary file of an interrupted write');
      }
    }
  }

  /**
   * The newest valid snapshot (falling back generation by generation), or undefined. Every
   * unusable file is logged with the reason; none is ever partly used.
   */
  load(): SavedState | undefined {
    this.removeTemporaryFiles();
    const gens = this.generations();
    if (gens.length > 0) this.nextGeneration = gens[0]! + 1;
    for (const g of gens) {
      const file = join(this.dir, `snapshot.${g}`);
      try {
        const state = decodeState(readFileSync(file), this.node, file, this.resources);
        if (state.header.generation !== g) throw new StateError(`${file}: header says generation ${state.header.generation}`);
        return state;
      } catch (err) {
        this.log.warn({ err, file }, 'saved state unusable; trying an older generation');
      }
    }
    if (gens.length > 0) this.log.warn({ dir: this.dir }, 'no usable saved state: serving nothing until the apiserver answers');
    return undefined;
  }

  /**
   * Writes the next generation and removes generations older than the previous one. Never
   * throws: a full or read-only disk leaves the wrapper serving from memory, logged and counted.
   */
  async save(meta: StateMeta, objects: Iterable<[string, string | Buffer]>): Promise<boolean> {
    const started = performance.now();
    const generation = this.nextGeneration;
    try {
      // The objects are taken now, in one synchronous pass, so the view may change while the
      // chunks are written.
      const data = encodeStateParts(this.node, generation, meta, objects);
      await writeFileDurably(this.dir, `snapshot.${generation}`, data);
      this.nextGeneration++;
      const keep = generation - 1;
      for (const name of await readdir(this.dir)) {
        const g = SNAPSHOT.exec(name)?.[1];
        if (g !== undefined && Number(g) < keep) await unlink(join(this.dir, name)).catch(() => {});
      }
      const seconds = (performance.now() - started) / 1000;
      this.metrics?.stateWritten(data.bytes, seconds);
      if (this.failing) this.log.info({ dir: this.dir, generation }, 'saving state works again');
      this.failing = undefined;
      this.log.debug({ generation, bytes: data.bytes, seconds }, 'state saved');
      return true;
    } catch (err) {
      this.metrics?.stateWriteFailed();
      const message = (err as Error).message;
      if (this.failing !== message) {
        this.log.error({ err, dir: this.dir, generation }, 'cannot save state; still serving from memory, retrying at the next interval');
      }
      this.failing = message;
      return false;
    }
  }

  /** The resourceVersion high-water mark saved by `saveRvCeiling`, or 0 when none is usable. */
  loadRvCeiling(): number {
    const file = join(this.dir, RV_FILE);
    let buf: Buffer;
    try {
      buf = readFileSync(file);
    } catch {
      return 0;
    }
    try {
      const state = decodeState(buf, this.node, file, new Set());
      const ceiling = (state.meta as { rvCeiling?: unknown }).rvCeiling;
      if (!Number.isSafeInteger(ceiling)) throw new StateError(`${file}: no rvCeiling`);
      return ceiling as number;
    } catch (err) {
      this.log.warn({ err, file }, 'resourceVersion high-water mark unusable; resourceVersions start from the clock');
      return 0;
    }
  }

  /**
   * Makes `ceiling` durable before the wrapper issues a resourceVersion up to it, so that after a
   * restart every resourceVersion is above all those issued before. Synchronous, and rare (once
   * per block of versions). Returns false when the disk refuses.
   */
  saveRvCeiling(ceiling: number): boolean {
    try {
      writeFileDurablySync(this.dir, RV_FILE, encodeState(this.node, 0, { rvCeiling: ceiling } as StateMeta, []));
      return true;
    } catch (err) {
      this.metrics?.stateWriteFailed();
      this.log.error({ err, dir: this.dir, ceiling }, 'cannot save the resourceVersion high-water mark');
      return false;
    }
  }
}

/**
 * Coalesces changes into at most one snapshot per interval. `changed()` is all the hot path does;
 * the snapshot is taken on a timer, and a snapshot never overlaps the previous one.
 */
export class SnapshotScheduler {
  private dirty = false;
  private running: Promise<boolean> | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly write: () => Promise<boolean>;
  /** `write` resolves false when the snapshot could not be saved: it is retried at the next tick. */
  constructor(intervalMs: number, write: () => Promise<boolean>) {
    this.write = write;
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }
  changed(): void {
    this.dirty = true;
  }
  /** Writes a snapshot now if anything changed since the last one. */
  async flush(): Promise<void> {
    if (this.running) await this.running;
    if (!this.dirty) return;
    this.dirty = false;
    this.running = this.write().finally(() => {
      this.running = undefined;
    });
    if (!(await this.running)) this.dirty = true;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}
