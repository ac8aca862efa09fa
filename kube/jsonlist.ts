// Reads a Kubernetes list response item by item. Parsing a 5 MB list in one JSON.parse keeps every
// parsed item alive until the last one is handled; tens of MB that survive young-generation
// collections make V8 grow its new space, and that memory stays resident. Splitting the body at
// item boundaries first lets each item be parsed, handed on and dropped.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Index just past the string starting at `i` (a quote). */
function stringEnd(b: Buffer, i: number): number {
  for (let j = i + 1; j < b.length; j++) {
    const c = b[j];
    if (c === BACKSLASH) j++;
    else if (c === QUOTE) return j + 1;
  }
  throw new SyntaxError('list body: unterminated string');
}

/** Index just past the JSON value starting at `i`. UTF-8 continuation bytes never equal ASCII structure. */
function valueEnd(b: Buffer, i: number): number {
  const c = b[i];
  if (c === QUOTE) return stringEnd(b, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (let j = i; j < b.length; j++) {
      const d = b[j]!;
      if (d === QUOTE) j = stringEnd(b, j) - 1;
      else if (d === 0x7b || d === 0x5b) depth++;
      else if ((d === 0x7d || d === 0x5d) && --depth === 0) return j + 1;
    }
    throw new SyntaxError('list body: unterminated object or array');
  }
  let j = i;
  while (j < b.length && b[j] !== 0x2c && b[j] !== 0x7d && b[j] !== 0x5d && !isSpace(b[j]!)) j++;
  if (j === i) throw new SyntaxError(`list body: unexpected byte at ${i}`);
  return j;
}

const skipSpace = (b: Buffer, i: number) => {
  while (i < b.length && isSpace(b[i]!)) i++;
  return i;
};

export interface SplitList<T> {
  /** The list without its items (kind, apiVersion, metadata). */
  head: Record<string, unknown> & { metadata?: { resourceVersion?: string } };
  /** The number of items. */
  count: number;
  /** Parses the items one at a time. */
  items(): Generator<T>;
}

/** Splits the JSON text of a list object into its fields and its `items`, which stay unparsed. */
export function splitList<T>(body: Buffer): SplitList<T> {
  const ranges: number[] = [];
  const fields: string[] = [];
  let i = skipSpace(body, 0);
  if (body[i] !== 0x7b) throw new SyntaxError('list body: not a JSON object');
  i = skipSpace(body, i + 1);
  while (body[i] !== 0x7d) {
    if (body[i] !== QUOTE) throw new SyntaxError(`list body: expected a key at ${i}`);
    const keyEnd = stringEnd(body, i);
    const key = JSON.parse(body.toString('utf8', i, keyEnd)) as string;
    i = skipSpace(body, keyEnd);
    if (body[i] !== 0x3a) throw new SyntaxError(`list body: expected ':' at ${i}`);
    i = skipSpace(body, i + 1);
    if (key === 'items' && body[i] === 0x5b) {
      i = skipSpace(body, i + 1);
      while (body[i] !== 0x5d) {
        const end = valueEnd(body, i);
        ranges.push(i, end);
        i = skipSpace(body, end);
        if (body[i] === 0x2c) i = skipSpace(body, i + 1);
        else if (body[i] !== 0x5d) throw new SyntaxError(`list body: expected ',' or ']' at ${i}`);
      }
      i = skipSpace(body, i + 1);
    } else {
      const end = valueEnd(body, i);
      if (key !== 'items') fields.push(`${JSON.stringify(key)}:${body.toString('utf8', i, end)}`);
      i = skipSpace(body, end);
    }
    if (body[i] === 0x2c) i = skipSpace(body, i + 1);
    else if (body[i] !== 0x7d) throw new SyntaxError(`list body: expected ',' or '}' at ${i}`);
  }
  return {
    head: JSON.parse(`{${fields.join(',')}}`),
    count: ranges.length / 2,
    *items() {
      for (let k = 0; k < ranges.length; k += 2) yield JSON.parse(body.toString('utf8', ranges[k], ranges[k + 1])) as T;
    },
  };
}

/**
 * Frees a page's bytes at once instead of at V8's next full collection: a page outlives many
 * young-generation collections while its items are handled, so it is promoted, and after a sync
 * the pages of every first list (~10 MiB in the wrapper at 5,000 Services) would otherwise stay
 * resident until the heap next grows enough to be collected whole. Only a Buffer that is the
 * sole view of its memory (what Buffer.concat returns for a page) is released.
 */
export function releasePage(page: Buffer): void {
  const memory = page.buffer;
  if (memory instanceof ArrayBuffer && page.byteOffset === 0 && memory.byteLength === page.length) memory.transfer(0);
}
