// Certificates for the test control plane, made with the openssl CLI (Node's crypto cannot sign
// X.509 certificates). EC P-256 keys keep generation to a few milliseconds each.
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error('openssl is not installed; it is needed to make test certificates');
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`);
  }
}

export interface KeyPair {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
}

async function readPair(certFile: string, keyFile: string): Promise<KeyPair> {
  return {
    certFile,
    keyFile,
    certPem: await readFile(certFile, 'utf8'),
    keyPem: await readFile(keyFile, 'utf8'),
  };
}

/** A self-signed CA in `dir`: it signs the apiserver's serving cert and every client cert. */
export async function createCA(dir: string): Promise<KeyPair> {
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
  await openssl(['req', '-x509', '-new', '-key', 'ca.key', '-days', '30', '-subj', '/CN=servicegroup-test-ca', '-out', 'ca.crt'], dir);
  return readPair(join(dir, 'ca.crt'), join(dir, 'ca.key'));
}

/**
 * A leaf certificate signed by the CA. `organizations` become the Kubernetes groups of a client
 * cert; `ipSANs`/`dnsSANs` make it a serving cert.
 */
export async function signCert(
  dir: string,
  ca: KeyPair,
  file: string,
  subject: { commonName: string; organizations?: string[]; ipSANs?: string[]; dnsSANs?: string[] },
): Promise<KeyPair> {
  const keyFile = `${file}.key`;
  const csrFile = `${file}.csr`;
  const certFile = `${file}.crt`;
  const extFile = `${file}.ext`;
  const subj = (subject.organizations ?? []).map((o) => `/O=${escapeSubject(o)}`).join('') + `/CN=${escapeSubject(subject.commonName)}`;
  const serving = (subject.ipSANs?.length ?? 0) + (subject.dnsSANs?.length ?? 0) > 0;
  const sans = [...(subject.ipSANs ?? []).map((ip) => `IP:${ip}`), ...(subject.dnsSANs ?? []).map((d) => `DNS:${d}`)];
  const ext = [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${serving ? 'serverAuth,clientAuth' : 'clientAuth'}`,
    ...(sans.length ? [`subjectAltName=${sans.join(',')}`] : []),
  ];
  await writeFile(join(dir, extFile), `${ext.join('\n')}\n`);
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile], dir);
  await openssl(['req', '-new', '-key', keyFile, '-subj', subj, '-out', csrFile], dir);
  await openssl(
    // A random serial per certificate: -CAcreateserial shares one serial file, which certificates
    // signed in parallel would race on.
    [
      'x509',
      '-req',
      '-in',
      csrFile,
      '-CA',
      ca.certFile,
      '-CAkey',
      ca.keyFile,
      '-set_serial',
      `0x${randomBytes(12).toString('hex')}`,
      '-days',
      '30',
      '-extfile',
      extFile,
      '-out',
      certFile,
    ],
    dir,
  );
  return readPair(join(dir, certFile), join(dir, keyFile));
}

function escapeSubject(s: string): string {
  return s.replace(/[/\\=+,]/g, (c) => `\\${c}`);
}

/** RSA key pair the apiserver signs ServiceAccount tokens with. */
export async function createServiceAccountKeys(dir: string): Promise<{ publicKeyFile: string; privateKeyFile: string }> {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const publicKeyFile = join(dir, 'sa.pub');
  const privateKeyFile = join(dir, 'sa.key');
  await writeFile(publicKeyFile, publicKey);
  await writeFile(privateKeyFile, privateKey, { mode: 0o600 });
  return { publicKeyFile, privateKeyFile };
}
