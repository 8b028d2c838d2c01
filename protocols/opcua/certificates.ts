/**
 * edged's own certificates for OPC UA: the application instance certificate
 * that signs and encrypts the secure channel (configured, or generated once
 * and kept in the data directory), and an optional X.509 user identity.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, type X509Certificate } from "node:crypto";
import { getLogger, writeFileAtomic } from "../../lib/mod.ts";
import type { OpcuaAdapterConfig } from "../../runtime/mod.ts";
import { readCertificates, sha256Hex } from "./trust.ts";

const log = getLogger(["edged", "opcua"]);

/** Days a generated certificate is valid. */
const GENERATED_VALIDITY_DAYS = 3650;

/** The application instance certificate edged presents. */
export interface ClientCertificate {
  certificateDer: Uint8Array;
  privateKeyPem: string;
  /** The URI in the certificate's subjectAltName (OPC 10000-6 6.2.2), sent as ApplicationUri. */
  applicationUri: string;
  /** SHA-256 of the DER bytes, what an operator compares on the server side. */
  sha256: string;
  /** Where it is on disk. */
  path: string;
}

/** Generates a certificate and key (node-opcua-crypto, loaded with the driver). */
export type CertificateGenerator = (
  applicationUri: string,
  commonName: string,
  validityDays: number,
) => Promise<{ certificatePem: string; privateKeyPem: string }>;

/** The `URI:` entry of a certificate's subjectAltName, if any. */
export function applicationUriOf(cert: X509Certificate): string | undefined {
  const san = cert.subjectAltName ?? "";
  const m = /(?:^|,\s*)URI:([^,]+)/.exec(san);
  return m?.[1].trim();
}

async function readKey(path: string): Promise<string> {
  const pem = await Deno.readTextFile(path);
  if (!/-----BEGIN (?:RSA )?PRIVATE KEY-----/.test(pem)) {
    throw new Error(`${path} is not an unencrypted PEM private key`);
  }
  return pem;
}

async function readPair(certPath: string, keyPath: string) {
  const certs = await readCertificates(certPath);
  if (certs.length === 0) throw new Error(`${certPath} holds no certificate`);
  const cert = certs[0];
  const privateKeyPem = await readKey(keyPath);
  const fromKey = createPublicKey(createPrivateKey(privateKeyPem)).export({
    type: "spki",
    format: "der",
  });
  const fromCert = cert.publicKey.export({ type: "spki", format: "der" });
  if (!Buffer.from(fromKey).equals(Buffer.from(fromCert))) {
    throw new Error(`${keyPath} is not the private key of ${certPath}`);
  }
  const der = new Uint8Array(cert.raw);
  return { cert, der, privateKeyPem };
}

/**
 * The application instance certificate: `certificate_file` and
 * `private_key_file` when set, else `{dataDir}/opcua/{name}/client.{crt,key}`,
 * generated on first start (key mode 0600). The server has to trust it
 * (its SHA-256 is logged and shown in the adapter's status).
 */
export async function loadClientCertificate(
  cfg: OpcuaAdapterConfig,
  dataDir: string,
  generate: CertificateGenerator,
): Promise<ClientCertificate> {
  let certPath = cfg.certificate_file;
  let keyPath = cfg.private_key_file;
  if (!certPath || !keyPath) {
    const dir = `${dataDir}/opcua/${cfg.name}`;
    certPath = `${dir}/client.crt`;
    keyPath = `${dir}/client.key`;
    let exists = true;
    try {
      await Deno.stat(certPath);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      exists = false;
    }
    if (!exists) {
      let host = "edged";
      try {
        host = Deno.hostname();
      } catch { /* no --allow-sys */ }
      const uri = `urn:${host}:edged:${cfg.name}`;
      const made = await generate(uri, `edged ${cfg.name}@${host}`, GENERATED_VALIDITY_DAYS);
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      // The key first: a certificate on disk always has its key beside it.
      await writeFileAtomic(keyPath, new TextEncoder().encode(made.privateKeyPem), { mode: 0o600 });
      await writeFileAtomic(certPath, new TextEncoder().encode(made.certificatePem));
      const { der } = await readPair(certPath, keyPath);
      log.warning(
        "opcua {name}: generated edged's OPC UA certificate {path} (sha256 {sha}); the server must trust it",
        { name: cfg.name, path: certPath, sha: await sha256Hex(der) },
      );
    }
  }
  const { cert, der, privateKeyPem } = await readPair(certPath, keyPath);
  const applicationUri = applicationUriOf(cert);
  if (!applicationUri) {
    throw new Error(
      `${certPath} has no URI in its subjectAltName; OPC UA needs the application URI there`,
    );
  }
  return {
    certificateDer: der,
    privateKeyPem,
    applicationUri,
    sha256: await sha256Hex(der),
    path: certPath,
  };
}

/** An X.509 user identity token's certificate and key. */
export async function loadUserCertificate(
  certPath: string,
  keyPath: string,
): Promise<{ certificateDer: Uint8Array; privateKeyPem: string }> {
  const { der, privateKeyPem } = await readPair(certPath, keyPath);
  return { certificateDer: der, privateKeyPem };
}
