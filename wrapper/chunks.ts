// Large responses and files are written from the objects' own bytes: joining them first would be
// one more copy of the whole (3 MB for a list of 5,000 EndpointSlices, per request), which the
// allocator keeps as resident memory after it is freed.
import type { Writable } from 'node:stream';

/** Parts joined into chunks of about `size` bytes: few writes, one chunk in memory at a time. */
export function* chunksOf(parts: Iterable<string | Buffer>, size = 256 * 1024): Generator<Buffer> {
  let batch: Buffer[] = [];
  let n = 0;
  for (const p of parts) {
    const b = typeof p === 'string' ? Buffer.from(p) : p;
    batch.push(b);
    n += b.length;
    if (n < size) continue;
    yield Buffer.concat(batch, n);
    batch = [];
    n = 0;
  }
  if (n > 0) yield Buffer.concat(batch, n);
}

/**
 * Writes the parts themselves, never copied: about `size` bytes at a time, corked so that each
 * batch leaves in one system call, and no more while the client has not read the last batch.
 * Resolves when all is written and the stream ended, or when the stream closed first.
 */
export async function writeParts(out: Writable, parts: readonly Buffer[], size = 64 * 1024): Promise<void> {
  let i = 0;
  while (i < parts.length) {
    if (out.destroyed) return;
    out.cork();
    let n = 0;
    let room = true;
    while (i < parts.length && n < size && room) {
      n += parts[i]!.length;
      room = out.write(parts[i++]!);
    }
    out.uncork();
    if (!room && !(await drained(out))) return;
  }
  out.end();
}

/** Whether the stream drained (false: it closed before). */
function drained(out: Writable): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => () => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      resolve(ok);
    };
    const onDrain = done(true);
    const onClose = done(false);
    out.once('drain', onDrain);
    out.once('close', onClose);
  });
}
