import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  boolFlag,
  durationFlag,
  enumFlag,
  FlagError,
  formatDuration,
  formatListenAddress,
  intFlag,
  listenFlag,
  parseDuration,
  parseFlags,
  parseListenAddress,
  stringFlag,
  usage,
} from './flags.ts';

describe('parseDuration', () => {
  test('Go syntax, in milliseconds', () => {
    assert.equal(parseDuration('15s'), 15_000);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1.5h'), 5_400_000);
    assert.equal(parseDuration('2h45m'), 9_900_000);
    assert.equal(parseDuration('0'), 0);
    assert.equal(parseDuration('0s'), 0);
    assert.equal(parseDuration('1500us'), 1.5);
  });
  test('refuses what Go refuses, saying why', () => {
    assert.throws(() => parseDuration('15'), /invalid duration "15": missing unit/);
    for (const bad of ['', 's', '-1s', '1d', '1 s', '1s ', 'abc', '1m30']) assert.throws(() => parseDuration(bad), FlagError, bad);
  });
  test('formats back the way Go prints durations', () => {
    for (const s of ['500ms', '15s', '1m30s', '10m0s', '1h0m0s', '1h30m0s', '0s', '1.5s'])
      assert.equal(formatDuration(parseDuration(s)), s);
  });
});

describe('parseListenAddress', () => {
  test('host:port, [ipv6]:port, :port and names', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseListenAddress('[::1]:8080'), { host: '::1', port: 8080 });
    assert.deepEqual(parseListenAddress('[::]:0'), { host: '::', port: 0 });
    assert.deepEqual(parseListenAddress(':8081'), { host: '', port: 8081 });
    assert.deepEqual(parseListenAddress('localhost:51006'), { host: 'localhost', port: 51006 });
  });
  test('round-trips through formatListenAddress', () => {
    for (const s of ['127.0.0.1:8080', '[::1]:8080', ':8081', 'localhost:1']) assert.equal(formatListenAddress(parseListenAddress(s)), s);
  });
  test('refuses bad addresses with a reason', () => {
    assert.throws(() => parseListenAddress('::1:8080'), /put an IPv6 address in brackets/);
    assert.throws(() => parseListenAddress('127.0.0.1'), /invalid listen address "127.0.0.1"/);
    assert.throws(() => parseListenAddress('127.0.0.1:70000'), /port 70000 is above 65535/);
    assert.throws(() => parseListenAddress('256.1.1.1:80'), /"256.1.1.1" is not an IP address or host name/);
    assert.throws(() => parseListenAddress('[zz]:80'), /"zz" is not an IPv6 address/);
    assert.throws(() => parseListenAddress('host_name:80'), /not an IP address or host name/);
    assert.throws(() => parseListenAddress('1.2.3.4:-1'), FlagError);
    assert.throws(() => parseListenAddress('1.2.3.4:'), FlagError);
  });
});

describe('parseFlags', () => {
  const set = {
    workers: intFlag({ default: 2, min: 1, max: 64, help: 'Workers.' }),
    'resync-period': durationFlag({ default: '10m', min: '1s', max: '24h', zero: true, help: 'Resync.' }),
    interval: durationFlag({ default: '60s', min: '1s', max: '1h', help: 'Interval.' }),
    'leader-elect': boolFlag({ default: true, help: 'Elect.' }),
    'log-level': enumFlag({ values: ['debug', 'info', 'warn'], default: 'info', help: 'Level.' }),
    'metrics-bind-address': listenFlag({ default: '127.0.0.1:8080', disable: true, help: 'Metrics.' }),
    listen: listenFlag({ default: '127.0.0.1:51006', help: 'Listen.' }),
    kubeconfig: stringFlag({ help: 'Path.' }),
  };

  test('defaults when nothing is given', () => {
    assert.deepEqual(parseFlags(set, []), {
      workers: 2,
      'resync-period': 600_000,
      interval: 60_000,
      'leader-elect': true,
      'log-level': 'info',
      'metrics-bind-address': { host: '127.0.0.1', port: 8080 },
      listen: { host: '127.0.0.1', port: 51006 },
      kubeconfig: '',
    });
  });

  test('--name=value and --name value; booleans bare or with =', () => {
    const v = parseFlags(set, [
      '--workers',
      '8',
      '--resync-period=0',
      '--interval=1m30s',
      '--leader-elect=false',
      '--log-level=debug',
      '--metrics-bind-address=0',
      '--listen=[::1]:9000',
      '--kubeconfig',
      '/tmp/kc',
    ]);
    assert.equal(v.workers, 8);
    assert.equal(v['resync-period'], 0);
    assert.equal(v.interval, 90_000);
    assert.equal(v['leader-elect'], false);
    assert.equal(v['log-level'], 'debug');
    assert.equal(v['metrics-bind-address'], undefined);
    assert.deepEqual(v.listen, { host: '::1', port: 9000 });
    assert.equal(v.kubeconfig, '/tmp/kc');
    assert.equal(parseFlags(set, ['--leader-elect=false', '--leader-elect'])['leader-elect'], true);
  });

  test('every bad value is refused with the flag, the value and the reason', () => {
    const cases: [string[], RegExp][] = [
      [['--workers=abc'], /invalid value "abc" for --workers: invalid integer "abc"/],
      [['--workers=0'], /invalid value "0" for --workers: 0 is out of range \[1, 64\]/],
      [['--workers=1.5'], /invalid integer "1.5"/],
      [['--workers='], /invalid value "" for --workers/],
      [['--interval=0'], /invalid value "0" for --interval: 0 is out of range \[1s, 1h0m0s\]$/],
      [['--interval=60'], /missing unit/],
      [['--resync-period=500ms'], /out of range \[1s, 24h0m0s\] \(or 0 to turn it off\)/],
      [['--leader-elect=yes'], /invalid value "yes" for --leader-elect: invalid boolean/],
      [['--log-level=loud'], /"loud" is not one of debug, info, warn/],
      [['--listen=0'], /invalid listen address "0"/],
      [['--listen=::1:80'], /brackets/],
      [['--no-such-flag=1'], /^unknown flag: --no-such-flag$/],
      [['--constructor=1'], /^unknown flag: --constructor$/],
      [['-workers=2'], /bad flag syntax: -workers=2/],
      [['positional'], /unexpected argument "positional"/],
      [['--kubeconfig'], /flag needs an argument: --kubeconfig/],
    ];
    for (const [argv, message] of cases)
      assert.throws(
        () => parseFlags(set, argv),
        (err: Error) => err instanceof FlagError && message.test(err.message),
        argv.join(' '),
      );
  });

  test('--help lists every flag with its type and default', () => {
    const text = usage('prog', 'Does things.', set);
    for (const name of Object.keys(set)) assert.match(text, new RegExp(`^  --${name}\\b`, 'm'));
    assert.match(text, /--resync-period duration +Resync\. \(default 10m\)/);
    assert.match(text, /--leader-elect +Elect\. \(default true\)/);
    assert.match(text, /--metrics-bind-address address +Metrics\. 0 turns it off\. \(default "127\.0\.0\.1:8080"\)/);
    assert.match(text, /--log-level string +Level\. One of: debug, info, warn\. \(default info\)/);
    assert.match(text, /-h, --help/);
  });
});

describe('the programs', () => {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const run = (program: string, args: string[]) =>
    spawnSync(process.execPath, [join(root, program), ...args], {
      encoding: 'utf8',
      env: { ...process.env, NODE_NAME: 'n1' },
      timeout: 30_000,
    });

  for (const [program, args, message] of [
    ['controllers/main.ts', ['--workers=abc'], /^servicegroup-controller: invalid value "abc" for --workers: invalid integer "abc"$/m],
    [
      'controllers/main.ts',
      ['--leader-elect-renew-deadline=20s'],
      /the lease duration \(15s\) must be greater than the renew deadline \(20s\)/,
    ],
    [
      'controllers/main.ts',
      ['--leader-elect-retry-period=9s'],
      /the renew deadline \(10s\) must be greater than 1.2 × the retry period \(9s\)/,
    ],
    ['controllers/main.ts', ['--metrics-listen=:8080'], /unknown flag: --metrics-listen/],
    [
      'wrapper/main.ts',
      ['--bookmark-interval=0'],
      /^application-grid-wrapper: invalid value "0" for --bookmark-interval: 0 is out of range \[1s, 1h0m0s\]$/m,
    ],
    ['wrapper/main.ts', ['--listen=::1:51006'], /put an IPv6 address in brackets/],
    ['wrapper/main.ts', ['--bookmark-interval-seconds=60'], /unknown flag: --bookmark-interval-seconds/],
  ] as const) {
    test(`${program} ${args.join(' ')}: exit 2 with a clear message`, () => {
      const r = run(program, [...args]);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /--help' for the list of flags/);
    });
  }

  test('--leader-elect=false skips the lease timing checks', () => {
    const r = run('controllers/main.ts', ['--leader-elect=false', '--leader-elect-renew-deadline=20s', '--kubeconfig=/nonexistent']);
    assert.doesNotMatch(r.stderr, /renew deadline/);
    assert.match(r.stderr, /nonexistent/);
  });

  test('--help lists every flag of both programs and exits 0', () => {
    const controller = run('controllers/main.ts', ['--help']);
    assert.equal(controller.status, 0);
    for (const flag of [
      'leader-elect',
      'leader-elect-lease-duration',
      'leader-elect-renew-deadline',
      'leader-elect-retry-period',
      'leader-elect-resource-namespace',
      'leader-elect-resource-name',
      'metrics-bind-address',
      'health-probe-bind-address',
      'workers',
      'resync-period',
    ])
      assert.match(controller.stdout, new RegExp(`^  --${flag} `, 'm'));
    const wrapper = run('wrapper/main.ts', ['-h']);
    assert.equal(wrapper.status, 0);
    for (const flag of ['listen', 'node-name', 'metrics-bind-address', 'bookmark-interval', 'event-log-size', 'log-level'])
      assert.match(wrapper.stdout, new RegExp(`^  --${flag} `, 'm'));
  });
});
