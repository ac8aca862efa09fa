import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineSplitter } from './lines.ts';

function split(chunks: Buffer[]): { lines: string[]; pending: number } {
  const s = new LineSplitter();
  const lines: string[] = [];
  for (const c of chunks) s.push(c, (l) => lines.push(l));
  return { lines, pending: s.pendingBytes };
}

/** `text` cut at the given byte offsets. */
function cut(text: string, at: number[]): Buffer[] {
  const b = Buffer.from(text);
  const bounds = [0, ...at, b.length];
  return bounds.slice(1).map((end, i) => b.subarray(bounds[i], end));
}

test('lines within one chunk, across chunks, and several per chunk', () => {
  assert.deepEqual(split([Buffer.from('{"a":1}\n{"b":2}\n')]).lines, ['{"a":1}', '{"b":2}']);
  assert.deepEqual(split(cut('{"a":1}\n{"b":2}\n', [3, 9, 12])).lines, ['{"a":1}', '{"b":2}']);
  assert.deepEqual(split(cut('{"a":1}\n', [7])).lines, ['{"a":1}'], 'the newline alone in the last chunk');
});

test('an unfinished line waits for its newline', () => {
  const r = split(cut('{"a":1}\n{"b":', [4]));
  assert.deepEqual(r.lines, ['{"a":1}']);
  assert.equal(r.pending, 5);
});

test('empty lines come out empty', () => {
  assert.deepEqual(split([Buffer.from('\n{"a":1}\n\n')]).lines, ['', '{"a":1}', '']);
});

test('a multi-byte character split between chunks is decoded whole', () => {
  const text = '{"unit":"zürich-東京-🛰"}\n';
  const bytes = Buffer.byteLength(text);
  // Every cut point, including inside each multi-byte sequence.
  for (let i = 1; i < bytes; i++) assert.deepEqual(split(cut(text, [i])).lines, ['{"unit":"zürich-東京-🛰"}'], `cut at byte ${i}`);
  // One byte per chunk.
  assert.deepEqual(
    split(
      cut(
        text,
        Array.from({ length: bytes - 1 }, (_, i) => i + 1),
      ),
    ).lines,
    ['{"unit":"zürich-東京-🛰"}'],
  );
});

test('a large line in many chunks comes out whole and exact', () => {
  const big = JSON.stringify({ data: 'x'.repeat(200_000), more: Array.from({ length: 1000 }, (_, i) => `v${i}`) });
  const text = `${big}\n{"next":true}\n`;
  const at = [];
  for (let i = 16_384; i < Buffer.byteLength(text); i += 16_384) at.push(i);
  assert.deepEqual(split(cut(text, at)).lines, [big, '{"next":true}']);
});
