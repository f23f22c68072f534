// TLS files are checked at start, before uWS sees them: uWS's SSLApp does not say
// which file is wrong (it just fails to listen), so we read each one, and check that
// the key opens with the passphrase and matches the certificate.
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ConfigError, type TlsConfig } from './config.js';

async function read(variable: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${variable}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The options for uWS SSLApp, once every file is known good. */
export async function checkTls(
  tls: TlsConfig,
): Promise<{ cert_file_name: string; key_file_name: string; passphrase?: string; ca_file_name?: string }> {
  const certPem = await read('HERALD_TLS_CERT_FILE', tls.certFile);
  const keyPem = await read('HERALD_TLS_KEY_FILE', tls.keyFile);
  if (tls.caFile !== undefined) {
    const ca = await read('HERALD_TLS_CA_FILE', tls.caFile);
    try {
      new X509Certificate(ca);
    } catch {
      throw new ConfigError(`HERALD_TLS_CA_FILE: ${tls.caFile} is not a PEM certificate`);
    }
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    throw new ConfigError(`HERALD_TLS_CERT_FILE: ${tls.certFile} is not a PEM certificate`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(tls.passphrase === undefined ? keyPem : { key: keyPem, passphrase: tls.passphrase });
  } catch {
    throw new ConfigError(
      `HERALD_TLS_KEY_FILE: ${tls.keyFile} is not a PEM private key${tls.passphrase === undefined ? ' (an encrypted key needs HERALD_TLS_PASSPHRASE)' : ', or HERALD_TLS_PASSPHRASE does not open it'}`,
    );
  }
  if (!cert.checkPrivateKey(key)) {
    throw new ConfigError(`HERALD_TLS_KEY_FILE: ${tls.keyFile} does not match the certificate in HERALD_TLS_CERT_FILE (${tls.certFile})`);
  }
  return {
    cert_file_name: tls.certFile,
    key_file_name: tls.keyFile,
    ...(tls.passphrase !== undefined ? { passphrase: tls.passphrase } : {}),
    ...(tls.caFile !== undefined ? { ca_file_name: tls.caFile } : {}),
  };
}
