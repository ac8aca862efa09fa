// Performs a Dockerfile's steps without a container engine, so that a broken image recipe fails a
// test on any machine: each stage gets a folder standing for its file system, COPY copies from the
// build context (filtered by .dockerignore) or from an earlier stage, RUN runs in the stage's
// WORKDIR with the host's Node first on PATH (standing for the `node` base image). What cannot be
// done without a container (switching to USER, the base image's own files) is recorded, not done.
// Instructions this does not understand are an error rather than a silent difference.
import { spawn } from 'node:child_process';
import { cp, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';

export type Step =
  | { kind: 'WORKDIR'; path: string }
  | { kind: 'ENV'; vars: Record<string, string> }
  | { kind: 'COPY'; from?: string; sources: string[]; dest: string }
  | { kind: 'RUN'; command: string }
  | { kind: 'USER'; user: string }
  | { kind: 'ENTRYPOINT' | 'CMD'; argv: string[] };

export interface Stage {
  /** The `AS` name, or the stage's index as a string. */
  name: string;
  base: string;
  steps: Step[];
}

/** The Dockerfile's stages, in order. Pure; throws on an instruction it does not understand. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  // Continuation lines (a trailing backslash) join the next line; comment lines inside are dropped.
  const logical: { line: number; text: string }[] = [];
  let pending: { line: number; text: string } | undefined;
  text.split('\n').forEach((raw, i) => {
    const trimmed = raw.trim();
    if (trimmed.startsWith('#') || (!pending && trimmed === '')) return;
    const continued = trimmed.endsWith('\\');
    const part = continued ? trimmed.slice(0, -1) : trimmed;
    pending = pending ? { line: pending.line, text: `${pending.text} ${part}` } : { line: i + 1, text: part };
    if (!continued) {
      logical.push(pending);
      pending = undefined;
    }
  });
  for (const { line, text: l } of logical) {
    const m = /^(\S+)\s*(.*)$/.exec(l);
    const keyword = (m?.[1] ?? '').toUpperCase();
    const rest = m?.[2]?.trim() ?? '';
    const fail = (why: string): never => {
      throw new Error(`Dockerfile line ${line}: ${why}: ${l}`);
    };
    if (keyword === 'FROM') {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest) ?? fail('FROM <image> [AS <name>] expected');
      stages.push({ name: f[2] ?? String(stages.length), base: f[1]!, steps: [] });
      continue;
    }
    const stage = stages[stages.length - 1] ?? fail('an instruction before the first FROM');
    switch (keyword) {
      case 'WORKDIR':
        stage.steps.push({ kind: 'WORKDIR', path: rest });
        break;
      case 'ENV': {
        const vars: Record<string, string> = {};
        const eq = /^(\w+)\s+(.*)$/.exec(rest);
        if (eq && !rest.includes('=')) vars[eq[1]!] = eq[2]!;
        else for (const pair of rest.matchAll(/(\w+)=("[^"]*"|\S*)/g)) vars[pair[1]!] = pair[2]!.replace(/^"(.*)"$/, '$1');
        stage.steps.push({ kind: 'ENV', vars });
        break;
      }
      case 'COPY': {
        const words = rest.split(/\s+/);
        let from: string | undefined;
        while (words[0]?.startsWith('--')) {
          const flag = words.shift()!;
          if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
          else fail(`COPY flag ${flag} is not supported here`);
        }
        if (words.length < 2) fail('COPY <source>... <dest> expected');
        if (words.some((w) => /[*?[]/.test(w))) fail('COPY with wildcards is not supported here');
        stage.steps.push({ kind: 'COPY', from, sources: words.slice(0, -1), dest: words[words.length - 1]! });
        break;
      }
      case 'RUN':
        if (rest.startsWith('[') || rest.startsWith('--')) fail('only the shell form of RUN is supported here');
        stage.steps.push({ kind: 'RUN', command: rest });
        break;
      case 'USER':
        stage.steps.push({ kind: 'USER', user: rest });
        break;
      case 'ENTRYPOINT':
      case 'CMD': {
        let argv: unknown;
        try {
          argv = JSON.parse(rest);
        } catch {
          fail(`only the exec (JSON array) form of ${keyword} is supported here`);
        }
        if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string')) fail(`${keyword} must be a JSON array of strings`);
        stage.steps.push({ kind: keyword, argv: argv as string[] });
        break;
      }
      default:
        fail(`instruction ${keyword} is not supported here`);
    }
  }
  if (stages.length === 0) throw new Error('Dockerfile has no FROM');
  return stages;
}

/** A .dockerignore pattern as a regular expression over slash-separated paths relative to the context. */
function ignoreRegex(pattern: string): RegExp {
  const clean = posix.normalize(pattern.replace(/^\/+/, ''));
  let re = '';
  for (let i = 0; i < clean.length; i++) {
    const c = clean[i]!;
    if (c === '*' && clean[i + 1] === '*') {
      // `**` matches any number of folders, `**/` included.
      re += '.*';
      i++;
      if (clean[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Whether .dockerignore leaves `path` out of the context: the last matching pattern decides; a folder's match covers what it holds. */
export function dockerIgnored(patterns: string[], path: string): boolean {
  const parts = path.split('/');
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const re = ignoreRegex(negated ? raw.slice(1) : raw);
    for (let n = 1; n <= parts.length; n++) {
      if (re.test(parts.slice(0, n).join('/'))) {
        ignored = !negated;
        break;
      }
    }
  }
  return ignored;
}

export function parseDockerignore(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

export interface AssembledImage {
  /** The final stage's file system. */
  root: string;
  /** The final WORKDIR, on the host. */
  workdir: string;
  env: Record<string, string>;
  user?: string;
  entrypoint: string[];
  cmd: string[];
}

export interface AssembleOptions {
  dockerfile: string;
  context: string;
  /** Empty folder to build in; stage i lives in `<dir>/stage-<i>`. */
  dir: string;
  /** Folder put first on PATH for RUN steps (the host's Node, standing for the base image's). */
  toolsPath: string;
  /** Receives the output of RUN steps. */
  log?: (text: string) => void;
}

/**
 * Performs the Dockerfile's stages and returns the final one. As BuildKit does, a stage starts as
 * soon as the stages it builds on (FROM, COPY --from) are done, so independent stages run at once.
 */
export async function assembleImage(o: AssembleOptions): Promise<AssembledImage> {
  const stages = parseDockerfile(await readFile(o.dockerfile, 'utf8'));
  let ignore: string[] = [];
  try {
    ignore = parseDockerignore(await readFile(join(o.context, '.dockerignore'), 'utf8'));
  } catch {}
  // Stages by name and by index, as FROM and COPY --from may name them; only earlier ones count.
  const done = new Map<string, Promise<AssembledImage>>();
  const earlier = (name: string, index: number, what: string) => {
    const p = done.get(name);
    if (!p && what !== 'FROM') throw new Error(`${what} ${name}: no earlier stage of that name (stage ${index})`);
    return p;
  };
  for (const [index, stage] of stages.entries()) {
    const base = earlier(stage.base, index, 'FROM');
    for (const step of stage.steps) if (step.kind === 'COPY' && step.from !== undefined) earlier(step.from, index, 'COPY --from');
    const p = performStage(o, stage, join(o.dir, `stage-${index}`), base, done, ignore);
    // A failure surfaces where the stage is awaited; do not also report it as unhandled.
    p.catch(() => {});
    done.set(stage.name, p);
    done.set(String(index), p);
  }
  return (await Promise.all(done.values())).pop()!;
}

async function performStage(
  o: AssembleOptions,
  stage: Stage,
  root: string,
  basePromise: Promise<AssembledImage> | undefined,
  done: Map<string, Promise<AssembledImage>>,
  ignore: string[],
): Promise<AssembledImage> {
  const base = await basePromise;
  if (base) await cp(base.root, root, { recursive: true, verbatimSymlinks: true });
  else await mkdir(root, { recursive: true });
  const image: AssembledImage = base ? { ...base, root, env: { ...base.env } } : { root, workdir: '/', env: {}, entrypoint: [], cmd: [] };
  const host = (p: string) => join(root, posix.resolve(image.workdir, p));
  for (const step of stage.steps) {
    switch (step.kind) {
      case 'WORKDIR':
        image.workdir = posix.resolve(image.workdir, step.path);
        await mkdir(host('.'), { recursive: true });
        break;
      case 'ENV':
        Object.assign(image.env, step.vars);
        break;
      case 'USER':
        image.user = step.user;
        break;
      case 'ENTRYPOINT':
        image.entrypoint = step.argv;
        image.cmd = [];
        break;
      case 'CMD':
        image.cmd = step.argv;
        break;
      case 'COPY': {
        const fromRoot = step.from === undefined ? undefined : (await done.get(step.from)!).root;
        const intoFolder = step.dest.endsWith('/') || step.sources.length > 1 || step.dest === '.';
        for (const source of step.sources) {
          const src = fromRoot ? join(fromRoot, posix.resolve('/', source)) : join(o.context, posix.normalize(source));
          const isDir = (await stat(src)).isDirectory();
          // Docker copies a folder's contents, not the folder; a file lands in a folder dest by its name.
          const dest = isDir || !intoFolder ? host(step.dest) : join(host(step.dest), posix.basename(source));
          await mkdir(isDir ? dest : dirname(dest), { recursive: true });
          if (fromRoot) await cp(src, dest, { recursive: true, verbatimSymlinks: true });
          else await copyContext(o.context, posix.normalize(source), dest, ignore);
        }
        break;
      }
      case 'RUN':
        await run(step.command, host('.'), { ...process.env, ...image.env, PATH: `${o.toolsPath}:${process.env.PATH}` }, o.log);
        break;
    }
  }
  return image;
}

/** Copies `source` (relative to the context) to `dest`, leaving out what .dockerignore names. */
async function copyContext(context: string, source: string, dest: string, ignore: string[]): Promise<void> {
  const rel = source === '.' ? '' : source;
  if (rel && dockerIgnored(ignore, rel)) throw new Error(`COPY ${source}: excluded by .dockerignore`);
  const st = await stat(join(context, rel));
  if (!st.isDirectory()) {
    await cp(join(context, rel), dest);
    return;
  }
  await mkdir(dest, { recursive: true });
  for (const entry of await readdir(join(context, rel), { withFileTypes: true })) {
    const path = rel ? `${rel}/${entry.name}` : entry.name;
    if (dockerIgnored(ignore, path)) continue;
    if (entry.isDirectory()) await copyContext(context, path, join(dest, entry.name), ignore);
    else await cp(join(context, path), join(dest, entry.name), { verbatimSymlinks: true });
  }
}

function run(command: string, cwd: string, env: NodeJS.ProcessEnv, log?: (text: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const take = (d: Buffer) => {
      output += d;
      log?.(String(d));
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`RUN ${command} failed (${signal ?? `exit ${code}`}):\n${output.slice(-3000)}`));
    });
  });
}

/**
 * The argv a container of this image runs, Kubernetes style: `command` replaces ENTRYPOINT (and
 * then CMD is not used), `args` replaces CMD.
 */
export function containerArgv(image: AssembledImage, container: { command?: string[]; args?: string[] } = {}): string[] {
  if (container.command) return [...container.command, ...(container.args ?? [])];
  return [...image.entrypoint, ...(container.args ?? image.cmd)];
}
