// The Dockerfile reader of the image test: parsing, .dockerignore matching and the container argv.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { containerArgv, dockerIgnored, parseDockerfile, parseDockerignore } from './dockerfile.ts';

test('parses stages, continuation lines, COPY --from, ENV forms and exec-form CMD', () => {
  const stages = parseDockerfile(
    [
      '# syntax=docker/dockerfile:1',
      'FROM node:24 AS build',
      'WORKDIR /app',
      'COPY a.json b.json ./',
      'RUN npm ci \\',
      '  # a comment inside a continued line',
      '  && npm run build',
      '',
      'FROM node:24',
      'ENV NODE_ENV=production A="x y"',
      'ENV LEGACY value with spaces',
      'COPY --from=build /app/dist ./',
      'USER 65532:65532',
      'ENTRYPOINT []',
      'CMD ["node", "main.js"]',
    ].join('\n'),
  );
  assert.equal(stages.length, 2);
  assert.deepEqual(stages[0], {
    name: 'build',
    base: 'node:24',
    steps: [
      { kind: 'WORKDIR', path: '/app' },
      { kind: 'COPY', from: undefined, sources: ['a.json', 'b.json'], dest: './' },
      { kind: 'RUN', command: 'npm ci  && npm run build' },
    ],
  });
  assert.equal(stages[1]!.name, '1');
  assert.deepEqual(stages[1]!.steps, [
    { kind: 'ENV', vars: { NODE_ENV: 'production', A: 'x y' } },
    { kind: 'ENV', vars: { LEGACY: 'value with spaces' } },
    { kind: 'COPY', from: 'build', sources: ['/app/dist'], dest: './' },
    { kind: 'USER', user: '65532:65532' },
    { kind: 'ENTRYPOINT', argv: [] },
    { kind: 'CMD', argv: ['node', 'main.js'] },
  ]);
});

test('an instruction it cannot perform faithfully is an error naming the line', () => {
  assert.throws(() => parseDockerfile('FROM x\nADD https://example.com/f /f'), /line 2: instruction ADD is not supported/);
  assert.throws(() => parseDockerfile('FROM x\nCOPY src/*.ts ./'), /line 2: COPY with wildcards/);
  assert.throws(() => parseDockerfile('FROM x\nCOPY --chown=1:1 a ./'), /COPY flag --chown=1:1/);
  assert.throws(() => parseDockerfile('FROM x\nCMD node main.js'), /exec \(JSON array\) form of CMD/);
  assert.throws(() => parseDockerfile('RUN true'), /before the first FROM/);
  assert.throws(() => parseDockerfile('# nothing'), /no FROM/);
});

test('.dockerignore: folders cover their contents, globs stay in one folder unless **, the last match wins', () => {
  const patterns = parseDockerignore('# comment\nnode_modules\n/dist\n*.md\n**/*.test.ts\n!keep.md\n');
  assert.deepEqual(patterns, ['node_modules', '/dist', '*.md', '**/*.test.ts', '!keep.md']);
  const ignored = (p: string) => dockerIgnored(patterns, p);
  assert.ok(ignored('node_modules'));
  assert.ok(ignored('node_modules/x/index.js'));
  assert.ok(ignored('dist/main.js'));
  assert.ok(ignored('README.md'));
  assert.ok(!ignored('docs/README.md'), '*.md matches at the root only');
  assert.ok(ignored('controllers/reconcile/queue.test.ts'));
  assert.ok(ignored('main.test.ts'));
  assert.ok(!ignored('controllers/main.ts'));
  assert.ok(!ignored('keep.md'));
  assert.ok(!ignored('node_modules_extra/file'));
});

test('the container argv follows Kubernetes: command replaces ENTRYPOINT and drops CMD, args replace CMD', () => {
  const image = { root: '/r', workdir: '/app', env: {}, entrypoint: ['tini', '--'], cmd: ['node', 'a.js'] };
  assert.deepEqual(containerArgv(image), ['tini', '--', 'node', 'a.js']);
  assert.deepEqual(containerArgv(image, { args: ['node', 'b.js'] }), ['tini', '--', 'node', 'b.js']);
  assert.deepEqual(containerArgv(image, { command: ['node', 'c.js'] }), ['node', 'c.js']);
  assert.deepEqual(containerArgv(image, { command: ['node', 'c.js'], args: ['--x'] }), ['node', 'c.js', '--x']);
});
