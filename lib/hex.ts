/**
 * Hex encoding and SHA-256 digests as lower-case hex: the one place edged
 * spells bytes as text (digests in manifests, TUF metadata, tokens).
 *
 * @example
 * ```ts
 * import { fromHex, sha256Hex, toHex } from "./hex.ts";
 * toHex(new Uint8Array([0, 255])); // "00ff"
 * fromHex("00ff"); // Uint8Array [0, 255]
 * await sha256Hex(new Uint8Array()); // "e3b0c442..."
 * ```
 *
 * @module
 */

const DIGITS = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += DIGITS[b];
  return s;
}

/** The bytes of `hex`; a `TypeError` on odd length or a non-hex digit. */
export function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError(`not a hex string: ${JSON.stringify(hex.slice(0, 32))}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Lower-case hex SHA-256 of `data` (WebCrypto, off the JS heap's hot path). */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return toHex(new Uint8Array(d));
}

/** Lower-case hex SHA-256 of a file; undefined when it does not exist. */
export async function sha256File(path: string): Promise<string | undefined> {
  let data: Uint8Array<ArrayBuffer>;
  try {
    // Release binaries are tens of MiB at most: one read and WebCrypto's
    // native digest beat a streaming JS hash by far.
    data = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  return await sha256Hex(data);
}
