// Node's HTTP module, loaded with require. Imported as an ES module, `node:http` has every export
// read to build the module's namespace, and three of them (WebSocket, CloseEvent, MessageEvent)
// are getters that load Node's bundled fetch implementation: about 2 MiB of heap and 3 MiB of
// resident memory in every process, for nothing these programs use (README, "The wrapper's
// memory at that scale").
import { createRequire } from 'node:module';

export const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');
