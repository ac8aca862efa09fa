// Node's HTTP module without its ES module facade. `import ... from 'node:http'` builds a module
// namespace of every export, and building it reads them all, running Node's lazy getters: among
// them http's WebSocket, CloseEvent and MessageEvent, which load undici (its bundled source and
// bytecode, web streams, worker_threads, zlib). Nothing here uses them, and they cost each
// program ~2.6 MiB of resident memory (README, "The controller's memory").
// `process.getBuiltinModule` hands out the module object itself: nothing more is loaded.

export const http = process.getBuiltinModule('node:http');
