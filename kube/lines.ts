// Splits a byte stream of newline-terminated records (a watch response: one JSON event per line)
// into lines. Each chunk is searched for newlines once, as bytes; a line is decoded when it is
// complete, so a UTF-8 character split between two chunks is never decoded in halves, and a
// large event arriving in many chunks is joined once rather than re-scanned at every chunk.

const NEWLINE = 0x0a;

export class LineSplitter {
  /** The start of an unfinished line: the tails of earlier chunks. */
  private pending: Buffer[] = [];

  /** Calls `line` with every line `chunk` completes, without its newline. */
  push(chunk: Buffer, line: (text: string) => void): void {
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl >= 0; nl = chunk.indexOf(NEWLINE, start)) {
      let text: string;
      if (this.pending.length === 0) {
        text = chunk.toString('utf8', start, nl);
      } else {
        this.pending.push(chunk.subarray(start, nl));
        text = Buffer.concat(this.pending).toString('utf8');
        this.pending = [];
      }
      start = nl + 1;
      line(text);
    }
    if (start < chunk.length) this.pending.push(start === 0 ? chunk : chunk.subarray(start));
  }

  /** Bytes of an unfinished line. */
  get pendingBytes(): number {
    let n = 0;
    for (const b of this.pending) n += b.length;
    return n;
  }
}
