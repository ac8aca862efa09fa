import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadCredentials, loadInCluster, loadKubeconfig } from './kubeconfig.ts';

const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-test-'));
const b64 = (s: string) => Buffer.from(s).toString('base64');
function write(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
async function optionsOf(creds: { applyToHTTPSOptions(o: RequestOptions): Promise<void> }) {
  const o: RequestOptions = {};
  await creds.applyToHTTPSOptions(o);
  return { ...o, headers: o.headers as Record<string, string> | undefined };
}

test('current context with embedded CA, client certificate and key', async () => {
  const file = write(
    'cert.yaml',
    `apiVersion: v1
kind: Config
current-context: b
contexts: [{name: a, context: {cluster: one, user: u1}}, {name: b, context: {cluster: two, user: u2}}]
clusters: [{name: one, cluster: {server: 'https://one:6443'}}, {name: two, cluster: {server: 'https://two:6443', certificate-authority-data: ${b64('CA')}}}]
users: [{name: u1, user: {token: nope}}, {name: u2, user: {client-certificate-data: ${b64('CERT')}, client-key-data: ${b64('KEY')}}}]
`,
  );
  const creds = loadKubeconfig(file);
  assert.equal(creds.server, 'https://two:6443');
  const o = await optionsOf(creds);
  assert.equal(String(o.ca), 'CA');
  assert.equal(String(o.cert), 'CERT');
  assert.equal(String(o.key), 'KEY');
  assert.equal(o.headers?.Authorization, undefined);
});

test('tokenFile is re-read on every request (rotation); relative paths are relative to the kubeconfig', async () => {
  write('token', 'first\n');
  write('ca.crt', 'CAFILE');
  const file = write(
    'token.yaml',
    `current-context: c
contexts: [{name: c, context: {cluster: k, user: sa}}]
clusters: [{name: k, cluster: {server: 'https://k:443', certificate-authority: ca.crt}}]
users: [{name: sa, user: {tokenFile: token}}]
`,
  );
  const creds = loadKubeconfig(file);
  assert.equal((await optionsOf(creds)).headers?.Authorization, 'Bearer first');
  write('token', 'second');
  const o = await optionsOf(creds);
  assert.equal(o.headers?.Authorization, 'Bearer second');
  assert.equal(String(o.ca), 'CAFILE');
});

test('a plain-HTTP server with no user', async () => {
  const file = write(
    'plain.yaml',
    `current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'http://127.0.0.1:8080'}}]\n`,
  );
  assert.equal(loadKubeconfig(file).server, 'http://127.0.0.1:8080');
});

test('clear errors for what cannot be used', () => {
  assert.throws(() => loadKubeconfig(join(dir, 'missing.yaml')), /ENOENT/);
  assert.throws(() => loadKubeconfig(write('bad.yaml', 'a: [')), /kubeconfig .*bad\.yaml/);
  assert.throws(() => loadKubeconfig(write('noctx.yaml', 'current-context: x\ncontexts: []\n')), /context "x" not found/);
  const exec = write(
    'exec.yaml',
    `current-context: c\ncontexts: [{name: c, context: {cluster: k, user: e}}]\nclusters: [{name: k, cluster: {server: 'https://k'}}]\nusers: [{name: e, user: {exec: {command: aws}}}]\n`,
  );
  assert.throws(() => loadKubeconfig(exec), /exec\/auth-provider/);
  const noServer = write(
    'noserver.yaml',
    `current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {}}]\n`,
  );
  assert.throws(() => loadKubeconfig(noServer), /has no server/);
});

test('in-cluster: server from the environment, ServiceAccount token and CA from the mounted folder', async () => {
  const sa = mkdtempSync(join(tmpdir(), 'sa-'));
  writeFileSync(join(sa, 'token'), 'satoken');
  writeFileSync(join(sa, 'ca.crt'), 'SACA');
  const creds = loadInCluster({ KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '6443' }, sa);
  assert.equal(creds.server, 'https://10.0.0.1:6443');
  const o = await optionsOf(creds);
  assert.equal(o.headers?.Authorization, 'Bearer satoken');
  assert.equal(String(o.ca), 'SACA');
  assert.equal(loadInCluster({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, sa).server, 'https://[fd00::1]:443');
  assert.throws(() => loadInCluster({}, sa), /KUBERNETES_SERVICE_HOST/);
});

test('where credentials are looked for: the given file, then $KUBECONFIG, then ~/.kube/config, then in-cluster', () => {
  const kubeconfig = (server: string) =>
    `current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: '${server}'}}]\n`;
  const given = write('given.yaml', kubeconfig('https://given'));
  const fromEnv = write('env.yaml', kubeconfig('https://env'));
  const home = mkdtempSync(join(tmpdir(), 'home-'));
  const inHome = { HOME: home };
  const env = { HOME: home, KUBECONFIG: `:${fromEnv}:${given}` };

  assert.equal(loadCredentials(given, env).server, 'https://given');
  assert.equal(loadCredentials('', env).server, 'https://env', 'the first file named in $KUBECONFIG');
  assert.throws(() => loadCredentials(undefined, inHome), /not in a cluster: KUBERNETES_SERVICE_HOST/, 'no ~/.kube/config yet');
  mkdirSync(join(home, '.kube'));
  writeFileSync(join(home, '.kube', 'config'), kubeconfig('https://home'));
  assert.equal(loadCredentials(undefined, inHome).server, 'https://home');
  assert.equal(loadCredentials(undefined, env).server, 'https://env', '$KUBECONFIG before ~/.kube/config');
});
