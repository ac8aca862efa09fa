// Large responses and files are written from the objects' own bytes, in chunks: joining them
// first would be one more copy of the whole (3 MB for a list of 5,000 EndpointSlices, per request),
// which the allocator keeps as resident memory after it is freed.

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
