// The programs' logger: pino writing JSON lines to stdout without blocking. pino's default
// destination writes every line with a blocking write; a burst of lines (a new NodeUnit makes one
// line per grid it touches) then spends its time in system calls on the thread that also sends the
// writes those lines report. Asynchronous, lines written while a write is under way go out together
// with the next one; pino writes out whatever is still buffered when the process exits.

import { type Logger, type LoggerOptions, pino } from 'pino';

export function stdoutLogger(options: LoggerOptions): Logger {
  return pino(options, pino.destination({ dest: 1, sync: false }));
}
