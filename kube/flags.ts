// Command-line flags as Kubernetes components spell and parse them: `--name=value` or
// `--name value`, booleans as `--name` or `--name=true|false`, durations in Go's syntax (`15s`,
// `1m30s`, `500ms`), listen addresses as `host:port` or `[ipv6]:port`. Every value is checked
// against its definition (ranges, units, choices), unknown flags are refused, and `--help` lists
// every flag with its default. Both programs declare their flags with the constructors below.

export class FlagError extends Error {}

export interface Flag<T> {
  readonly help: string;
  /** Shown in --help after the flag name, e.g. `duration`; empty for booleans. */
  readonly type: string;
  readonly default: T;
  /** The default as a user would type it, for --help. */
  readonly defaultText: string;
  /** A boolean flag may be given without a value. */
  readonly boolean?: true;
  parse(raw: string): T;
}

// ---------------------------------------------------------------------------------------------
// Value syntaxes, exported for the programs' own checks and for tests.

const DURATION_UNITS_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go duration (`1h2m3.5s`, `500ms`, `0`) into milliseconds. Negative durations are refused. */
export function parseDuration(s: string): number {
  if (s === '0') return 0;
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let ms = 0;
  let at = 0;
  if (s === '') throw new FlagError('empty duration (e.g. 15s, 1m30s, 500ms)');
  while (at < s.length) {
    part.lastIndex = at;
    const m = part.exec(s);
    if (!m) {
      const hint = /^\d+(\.\d+)?$/.test(s) ? ': missing unit' : '';
      throw new FlagError(`invalid duration ${JSON.stringify(s)}${hint} (e.g. 15s, 1m30s, 500ms)`);
    }
    ms += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
    at = part.lastIndex;
  }
  return ms;
}

/** Formats milliseconds the way Go prints a duration, for messages and --help (`1m30s`, `500ms`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${s}s`;
}

export interface ListenAddress {
  /** Empty for every interface (`:8080`). IPv6 hosts without brackets. */
  host: string;
  port: number;
}

const HOSTNAME = /^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9a-fA-F:.]*:[0-9a-fA-F:.]*$/;

/** Parses `host:port`, `[ipv6]:port` or `:port` (every interface). */
export function parseListenAddress(s: string): ListenAddress {
  const example = '(e.g. 127.0.0.1:8080, [::1]:8080, :8080)';
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d+)$/.exec(s);
  if (!m) {
    const hint = (s.match(/:/g)?.length ?? 0) > 1 && !s.startsWith('[') ? ': put an IPv6 address in brackets' : '';
    throw new FlagError(`invalid listen address ${JSON.stringify(s)}${hint} ${example}`);
  }
  const port = Number(m[3]);
  if (port > 65535) throw new FlagError(`invalid listen address ${JSON.stringify(s)}: port ${port} is above 65535`);
  if (m[1] !== undefined) {
    if (!IPV6.test(m[1]))
      throw new FlagError(`invalid listen address ${JSON.stringify(s)}: ${JSON.stringify(m[1])} is not an IPv6 address`);
    return { host: m[1], port };
  }
  const host = m[2]!;
  if (host && !IPV4.test(host) && !(HOSTNAME.test(host) && !/^[\d.]+$/.test(host)))
    throw new FlagError(`invalid listen address ${JSON.stringify(s)}: ${JSON.stringify(host)} is not an IP address or host name`);
  return { host, port };
}

/** `host:port` again, with brackets for IPv6. */
export function formatListenAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

// ---------------------------------------------------------------------------------------------
// Flag constructors.

export function stringFlag(opts: { default?: string; help: string; validate?: (v: string) => string | undefined }): Flag<string> {
  const def = opts.default ?? '';
  return {
    help: opts.help,
    type: 'string',
    default: def,
    defaultText: def ? JSON.stringify(def) : '',
    parse(raw) {
      const problem = opts.validate?.(raw);
      if (problem) throw new FlagError(problem);
      return raw;
    },
  };
}

/** `--kubeconfig`, the same for both programs: the order is that of `loadCredentials`. */
export function kubeconfigFlag(): Flag<string> {
  return stringFlag({
    help: 'Path to a kubeconfig for the apiserver. Default: the first file of $KUBECONFIG, then ~/.kube/config, then the in-cluster ServiceAccount.',
  });
}

export function boolFlag(opts: { default: boolean; help: string }): Flag<boolean> {
  return {
    help: opts.help,
    type: '',
    default: opts.default,
    defaultText: String(opts.default),
    boolean: true,
    parse(raw) {
      // The spellings Go's strconv.ParseBool accepts, as pflag does.
      if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(raw)) return true;
      if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(raw)) return false;
      throw new FlagError(`invalid boolean ${JSON.stringify(raw)} (true or false)`);
    },
  };
}

export function intFlag(opts: { default: number; min: number; max: number; help: string }): Flag<number> {
  return {
    help: opts.help,
    type: 'int',
    default: opts.default,
    defaultText: String(opts.default),
    parse(raw) {
      if (!/^-?\d+$/.test(raw)) throw new FlagError(`invalid integer ${JSON.stringify(raw)}`);
      const n = Number(raw);
      if (n < opts.min || n > opts.max) throw new FlagError(`${n} is out of range [${opts.min}, ${opts.max}]`);
      return n;
    },
  };
}

/** A duration in milliseconds. `zero` allows `0` below `min` (commonly: "off"). */
export function durationFlag(opts: { default: string; min: string; max: string; zero?: boolean; help: string }): Flag<number> {
  const min = parseDuration(opts.min);
  const max = parseDuration(opts.max);
  return {
    help: opts.help,
    type: 'duration',
    default: parseDuration(opts.default),
    defaultText: opts.default,
    parse(raw) {
      const ms = parseDuration(raw);
      if (ms === 0 && opts.zero) return 0;
      if (ms < min || ms > max)
        throw new FlagError(
          `${raw} is out of range [${formatDuration(min)}, ${formatDuration(max)}]${opts.zero ? ' (or 0 to turn it off)' : ''}`,
        );
      return ms;
    },
  };
}

export function enumFlag<const V extends string>(opts: { values: readonly V[]; default: V; help: string }): Flag<V> {
  return {
    help: `${opts.help} One of: ${opts.values.join(', ')}.`,
    type: 'string',
    default: opts.default,
    defaultText: opts.default,
    parse(raw) {
      if (!(opts.values as readonly string[]).includes(raw))
        throw new FlagError(`${JSON.stringify(raw)} is not one of ${opts.values.join(', ')}`);
      return raw as V;
    },
  };
}

/**
 * A listen address. With `disable`, the value `0` turns the listener off (undefined), as
 * controller-runtime's `--metrics-bind-address=0` does; without, an address is required.
 */
export function listenFlag(opts: { default: string; disable: true; help: string }): Flag<ListenAddress | undefined>;
export function listenFlag(opts: { default: string; disable?: false; help: string }): Flag<ListenAddress>;
export function listenFlag(opts: { default: string; disable?: boolean; help: string }): Flag<ListenAddress | undefined> {
  const parse = (raw: string) => (opts.disable && raw === '0' ? undefined : parseListenAddress(raw));
  return {
    help: opts.disable ? `${opts.help} 0 turns it off.` : opts.help,
    type: 'address',
    default: parse(opts.default),
    defaultText: JSON.stringify(opts.default),
    parse,
  };
}

// ---------------------------------------------------------------------------------------------
// Parsing.

export type FlagSet = Record<string, Flag<unknown>>;
export type FlagValues<S extends FlagSet> = { [K in keyof S]: S[K] extends Flag<infer T> ? T : never };

/** Parses `argv` (without node and script). Throws FlagError naming the flag on any problem. */
export function parseFlags<S extends FlagSet>(set: S, argv: readonly string[]): FlagValues<S> {
  const values: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(set)) values[name] = f.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z0-9][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      if (arg.startsWith('-')) throw new FlagError(`bad flag syntax: ${arg} (flags are spelled --name=value)`);
      throw new FlagError(`unexpected argument ${JSON.stringify(arg)}: this program takes flags only`);
    }
    const name = m[1]!;
    const f = Object.hasOwn(set, name) ? set[name] : undefined;
    if (!f) throw new FlagError(`unknown flag: --${name}`);
    let raw = m[2];
    if (raw === undefined) {
      if (f.boolean) raw = 'true';
      else if (i + 1 < argv.length) raw = argv[++i]!;
      else throw new FlagError(`flag needs an argument: --${name}`);
    }
    try {
      values[name] = f.parse(raw);
    } catch (err) {
      if (err instanceof FlagError) throw new FlagError(`invalid value ${JSON.stringify(raw)} for --${name}: ${err.message}`);
      throw err;
    }
  }
  return values as FlagValues<S>;
}

/** The --help text: usage line, then every flag with its type, help and default. */
export function usage(program: string, summary: string, set: FlagSet): string {
  const lines = [`Usage: ${program} [flags]`, '', summary, '', 'Flags:'];
  const heads = Object.entries(set).map(([name, f]) => `  --${name}${f.type ? ` ${f.type}` : ''}`);
  const width = Math.max(...heads.map((h) => h.length)) + 3;
  Object.values(set).forEach((f, i) => {
    const def = f.defaultText ? ` (default ${f.defaultText})` : '';
    lines.push(`${heads[i]!.padEnd(width)}${f.help}${def}`);
  });
  lines.push(`${'  -h, --help'.padEnd(width)}Print this help and exit.`);
  return `${lines.join('\n')}\n`;
}

export interface CommandLine<S extends FlagSet> {
  program: string;
  summary: string;
  flags: S;
  /** Relations between flags; return a message to refuse the combination. */
  check?: (values: FlagValues<S>) => string | undefined;
}

/**
 * Parses process arguments for a program's main: prints --help and exits 0, or prints the problem
 * and exits 2 (the exit code of a usage error, as Kubernetes components use).
 */
export function parseCommandLine<S extends FlagSet>(cmd: CommandLine<S>, argv = process.argv.slice(2)): FlagValues<S> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage(cmd.program, cmd.summary, cmd.flags));
    process.exit(0);
  }
  try {
    const values = parseFlags(cmd.flags, argv);
    const problem = cmd.check?.(values);
    if (problem) throw new FlagError(problem);
    return values;
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    process.stderr.write(`${cmd.program}: ${err.message}\nRun '${cmd.program} --help' for the list of flags.\n`);
    process.exit(2);
  }
}
