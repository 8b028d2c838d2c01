/**
 * RSASSA-PSS verification with salt-length recovery (RFC 8017 section 8.1.2
 * and EMSA-PSS-VERIFY, 9.1.2). WebCrypto needs the salt length up front;
 * securesystemslib verifies with `PSS.AUTO`, so signatures with any salt
 * length are valid TUF signatures. Verification only: no secret data here.
 */

/** Minimal DER reader for SubjectPublicKeyInfo { alg, BIT STRING { SEQUENCE { n, e } } }. */
function readRsaPublicKey(spki: Uint8Array): { n: bigint; e: bigint } {
  let pos = 0;
  const header = (): { tag: number; len: number } => {
    const tag = spki[pos++];
    let len = spki[pos++];
    if (len & 0x80) {
      const k = len & 0x7f;
      len = 0;
      for (let i = 0; i < k; i++) len = len * 256 + spki[pos++];
    }
    return { tag, len };
  };
  const integer = (): bigint => {
    const { tag, len } = header();
    if (tag !== 0x02) throw new TypeError("expected INTEGER");
    let v = 0n;
    for (let i = 0; i < len; i++) v = (v << 8n) | BigInt(spki[pos++]);
    return v;
  };
  if (header().tag !== 0x30) throw new TypeError("expected SEQUENCE");
  const alg = header();
  pos += alg.len;
  if (header().tag !== 0x03) throw new TypeError("expected BIT STRING");
  pos++; // unused-bits octet
  if (header().tag !== 0x30) throw new TypeError("expected SEQUENCE");
  const n = integer();
  const e = integer();
  return { n, e };
}

function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  base %= mod;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % mod;
    base = (base * base) % mod;
    exp >>= 1n;
  }
  return result;
}

async function digest(hash: string, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest(hash, data as Uint8Array<ArrayBuffer>));
}

/** MGF1 (RFC 8017 B.2.1). */
async function mgf1(hash: string, seed: Uint8Array, len: number): Promise<Uint8Array> {
  const out = new Uint8Array(len);
  let filled = 0;
  for (let counter = 0; filled < len; counter++) {
    const block = new Uint8Array(seed.length + 4);
    block.set(seed);
    new DataView(block.buffer).setUint32(seed.length, counter);
    const h = await digest(hash, block);
    out.set(h.subarray(0, Math.min(h.length, len - filled)), filled);
    filled += h.length;
  }
  return out;
}

/** True when `sig` is a valid RSASSA-PSS signature of `message`, whatever its salt length. */
export async function rsaPssVerifyAnySalt(
  spki: Uint8Array,
  hash: string,
  sig: Uint8Array,
  message: Uint8Array,
): Promise<boolean> {
  const { n, e } = readRsaPublicKey(spki);
  const modBits = n.toString(2).length;
  const k = Math.ceil(modBits / 8);
  if (sig.length !== k) return false;
  let s = 0n;
  for (const b of sig) s = (s << 8n) | BigInt(b);
  if (s >= n) return false;
  let m = modPow(s, e, n);
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  const em = new Uint8Array(emLen);
  for (let i = emLen - 1; i >= 0; i--) {
    em[i] = Number(m & 0xffn);
    m >>= 8n;
  }
  if (m !== 0n) return false;
  const mHash = await digest(hash, message);
  const hLen = mHash.length;
  if (emLen < hLen + 2 || em[emLen - 1] !== 0xbc) return false;
  const maskedDb = em.subarray(0, emLen - hLen - 1);
  const h = em.subarray(emLen - hLen - 1, emLen - 1);
  const topMask = 0xff >> (8 * emLen - emBits);
  if ((maskedDb[0] & ~topMask) !== 0) return false;
  const db = await mgf1(hash, h, maskedDb.length);
  for (let i = 0; i < db.length; i++) db[i] ^= maskedDb[i];
  db[0] &= topMask;
  let i = 0;
  while (i < db.length && db[i] === 0) i++;
  if (i >= db.length || db[i] !== 0x01) return false;
  const salt = db.subarray(i + 1);
  const mPrime = new Uint8Array(8 + hLen + salt.length);
  mPrime.set(mHash, 8);
  mPrime.set(salt, 8 + hLen);
  const hPrime = await digest(hash, mPrime);
  return hPrime.every((b, j) => b === h[j]);
}
