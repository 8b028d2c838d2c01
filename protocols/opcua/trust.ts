/**
 * Whether edged trusts an OPC UA server's application instance certificate.
 * A certificate is trusted only when it is pinned (its SHA-256, or the file
 * holding it) or found in, or issued by a CA found in, the trusted
 * directory, and is within its validity period; nothing is accepted on first
 * use. Uses `node:crypto` only, so it costs nothing when no OPC UA adapter
 * is configured.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";

/** Where trust comes from (the adapter's `server_certificate_*` / `trusted_certificates_dir`). */
export interface TrustOptions {
  /** SHA-256 of the pinned certificate's DER bytes (hex, colons allowed). */
  sha256?: string;
  /** File (PEM or DER) holding the pinned certificate. */
  file?: string;
  /** Directory of trusted certificates (PEM or DER): servers' own or their CAs. */
  dir?: string;
}

/** The outcome of a check: trusted, or why not (naming the certificate so it can be pinned). */
export type TrustResult = { trusted: true } | { trusted: false; reason: string };

/** Most certificates read from the trusted directory (bounded work per check). */
const MAX_TRUSTED = 1000;
/** Longest chain followed from the server's certificate to a trusted one. */
const MAX_CHAIN = 8;

/** SHA-256 of DER bytes as lower-case hex. */
export async function sha256Hex(der: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", der as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Normalises a configured thumbprint (drops colons, lower-cases). */
export function normaliseThumbprint(hex: string): string {
  return hex.replaceAll(":", "").toLowerCase();
}

/**
 * Splits concatenated DER certificates (how OPC UA sends a chain, OPC
 * 10000-6 6.2.3) into single certificates: each is one ASN.1 SEQUENCE.
 */
export function splitDerChain(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < bytes.length && out.length < MAX_CHAIN) {
    if (bytes[pos] !== 0x30 || pos + 2 > bytes.length) break;
    let len = bytes[pos + 1];
    let header = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4 || pos + 2 + n > bytes.length) break;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + bytes[pos + 2 + i];
      header = 2 + n;
    }
    const end = pos + header + len;
    if (end > bytes.length) break;
    out.push(bytes.subarray(pos, end));
    pos = end;
  }
  return out;
}

/** Reads every certificate of a PEM or DER file. */
export async function readCertificates(path: string): Promise<X509Certificate[]> {
  const bytes = await Deno.readFile(path);
  const text = new TextDecoder().decode(bytes);
  if (text.includes("-----BEGIN CERTIFICATE-----")) {
    const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ??
      [];
    return blocks.map((b) => new X509Certificate(b));
  }
  return splitDerChain(bytes).map((d) => new X509Certificate(d));
}

function describe(cert: X509Certificate, sha: string): string {
  return `'${
    cert.subject.replaceAll("\n", ", ")
  }' (sha256 ${sha}, valid ${cert.validFrom} to ${cert.validTo})`;
}

/**
 * Checks server certificates against pins and a trusted directory.
 *
 * @example
 * ```ts ignore
 * const trust = await ServerTrust.load({ sha256: "94031fd9..." });
 * const r = await trust.check(derBytesFromTheServer);
 * if (!r.trusted) throw new Error(r.reason);
 * ```
 */
export class ServerTrust {
  #pins: Set<string>;
  #dir?: string;

  private constructor(pins: Set<string>, dir?: string) {
    this.#pins = pins;
    this.#dir = dir;
  }

  /**
   * Reads the pinned file now (so a missing file stops the start); the
   * directory is read on every check, so a certificate added there is
   * trusted from the next connection on.
   */
  static async load(options: TrustOptions): Promise<ServerTrust> {
    const pins = new Set<string>();
    if (options.sha256) pins.add(normaliseThumbprint(options.sha256));
    if (options.file) {
      const certs = await readCertificates(options.file);
      if (certs.length === 0) throw new Error(`${options.file} holds no certificate`);
      pins.add(await sha256Hex(new Uint8Array(certs[0].raw)));
    }
    if (options.dir) {
      const info = await Deno.stat(options.dir);
      if (!info.isDirectory) throw new Error(`${options.dir} is not a directory`);
    }
    return new ServerTrust(pins, options.dir);
  }

  /** True when nothing at all is trusted (only valid for security mode None). */
  get empty(): boolean {
    return this.#pins.size === 0 && this.#dir === undefined;
  }

  async #trusted(): Promise<{ cert: X509Certificate; sha: string }[]> {
    if (!this.#dir) return [];
    const out: { cert: X509Certificate; sha: string }[] = [];
    for await (const entry of Deno.readDir(this.#dir)) {
      if (!entry.isFile || !/\.(pem|crt|cer|der)$/i.test(entry.name)) continue;
      try {
        for (const cert of await readCertificates(`${this.#dir}/${entry.name}`)) {
          out.push({ cert, sha: await sha256Hex(new Uint8Array(cert.raw)) });
          if (out.length >= MAX_TRUSTED) return out;
        }
      } catch {
        // An unreadable file trusts nothing; the others still count.
      }
    }
    return out;
  }

  /**
   * Checks the certificate (or DER chain, leaf first) a server presented.
   * Trusted when its validity period holds now and it is pinned, is in the
   * trusted directory, or chains (through certificates it sent) to a CA
   * certificate in the trusted directory.
   */
  async check(chainDer: Uint8Array, now = new Date()): Promise<TrustResult> {
    const parts = splitDerChain(chainDer);
    if (parts.length === 0) return { trusted: false, reason: "the server sent no certificate" };
    let leaf: X509Certificate;
    let chain: X509Certificate[];
    try {
      chain = parts.map((d) => new X509Certificate(d));
      leaf = chain[0];
    } catch (err) {
      return { trusted: false, reason: `the server's certificate does not parse: ${err}` };
    }
    const leafSha = await sha256Hex(parts[0]);
    const what = describe(leaf, leafSha);
    if (now < new Date(leaf.validFrom)) {
      return { trusted: false, reason: `server certificate ${what} is not valid yet` };
    }
    if (now > new Date(leaf.validTo)) {
      return { trusted: false, reason: `server certificate ${what} has expired` };
    }
    if (this.#pins.has(leafSha)) return { trusted: true };
    const trusted = await this.#trusted();
    if (trusted.some((t) => t.sha === leafSha)) return { trusted: true };
    // Walk up through the certificates the server sent until one is issued
    // by a trusted CA (each link checked by signature, not by name alone).
    let current = leaf;
    for (let depth = 0; depth < MAX_CHAIN; depth++) {
      const ca = trusted.find((t) =>
        t.cert.ca && current.checkIssued(t.cert) && current.verify(t.cert.publicKey) &&
        now >= new Date(t.cert.validFrom) && now <= new Date(t.cert.validTo)
      );
      if (ca) return { trusted: true };
      const next = chain.find((c) =>
        c !== current && c.ca && current.checkIssued(c) && current.verify(c.publicKey)
      );
      if (!next) break;
      current = next;
    }
    return {
      trusted: false,
      reason:
        `server certificate ${what} is not trusted: pin it with server_certificate_sha256 = ` +
        `"${leafSha}" (after checking it out of band) or put it in trusted_certificates_dir`,
    };
  }
}
