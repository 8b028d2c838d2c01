/**
 * ota/tuf building blocks: canonical JSON as securesystemslib encodes it,
 * signatures made by OpenSSL (ECDSA P-256, RSA-PSS with any salt length,
 * Ed25519) verified by our key code, strict metadata parsing, and target
 * path patterns (section 4.5).
 */
import { join } from "node:path";
import {
  canonicalJson,
  FormatError,
  type Key,
  keyId,
  parseMetadata,
  pathMatches,
  quoteName,
  verifySignature,
} from "../../ota/tuf/mod.ts";
import { assert, assertEquals } from "./fixtures/tuf/harness.ts";

// Expected output checked against securesystemslib.formats.encode_canonical.
Deno.test("canonical JSON sorts keys, escapes only quote and backslash, refuses floats", () => {
  assertEquals(
    canonicalJson({ b: [1, true, null], a: 'x"\\\n\u00e9', "\u00e9": {}, A: -3 }),
    '{"A":-3,"a":"x\\"\\\\\n\u00e9","b":[1,true,null],"\u00e9":{}}',
  );
  let threw = false;
  try {
    canonicalJson({ x: 1.5 });
  } catch (err) {
    threw = err instanceof FormatError;
  }
  assert(threw, "a float must be refused");
});

Deno.test("key IDs are the SHA-256 of the key's canonical JSON", () => {
  // Expected ID computed with securesystemslib's encode_canonical + hashlib.sha256.
  const key: Key = {
    keytype: "ed25519",
    scheme: "ed25519",
    keyval: { public: "72378e5bc588793e58f81c8533da64a2e8f1565c1fcc7f253496394ffc52542c" },
  };
  assertEquals(keyId(key), "1bf1c6e3cdd3d3a8420b19199e27511999850f4b376c4547b2f32fba7e80fca3");
  assertEquals(keyId(key), keyId({ scheme: "ed25519", keyval: key.keyval, keytype: "ed25519" }));
});

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

Deno.test("signatures made by OpenSSL verify: ECDSA P-256 (DER), RSA-PSS (salt 32 and max), Ed25519", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const data = new TextEncoder().encode('{"_type":"targets"}');
    await Deno.writeFile(join(dir, "data"), data);
    const cases: {
      name: string;
      gen: string[];
      sign: string[];
      keytype: string;
      scheme: string;
    }[] = [
      {
        name: "ec",
        gen: [
          "genpkey",
          "-algorithm",
          "EC",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-out",
          "ec.pem",
        ],
        sign: ["dgst", "-sha256", "-sign", "ec.pem", "-out", "ec.sig", "data"],
        keytype: "ecdsa",
        scheme: "ecdsa-sha2-nistp256",
      },
      {
        name: "rsa",
        gen: [
          "genpkey",
          "-algorithm",
          "RSA",
          "-pkeyopt",
          "rsa_keygen_bits:2048",
          "-out",
          "rsa.pem",
        ],
        sign: [
          "dgst",
          "-sha256",
          "-sigopt",
          "rsa_padding_mode:pss",
          "-sigopt",
          "rsa_pss_saltlen:32",
          "-sign",
          "rsa.pem",
          "-out",
          "rsa.sig",
          "data",
        ],
        keytype: "rsa",
        scheme: "rsassa-pss-sha256",
      },
      {
        name: "rsa",
        gen: [],
        // Maximum salt length: only the salt-recovering EMSA-PSS check accepts it.
        sign: [
          "dgst",
          "-sha256",
          "-sigopt",
          "rsa_padding_mode:pss",
          "-sigopt",
          "rsa_pss_saltlen:max",
          "-sign",
          "rsa.pem",
          "-out",
          "rsa.sig",
          "data",
        ],
        keytype: "rsa",
        scheme: "rsassa-pss-sha256",
      },
    ];
    for (const c of cases) {
      if (c.gen.length) await openssl(c.gen, dir);
      await openssl(["pkey", "-in", `${c.name}.pem`, "-pubout", "-out", `${c.name}.pub`], dir);
      await openssl(c.sign, dir);
      const key: Key = {
        keytype: c.keytype,
        scheme: c.scheme,
        keyval: { public: await Deno.readTextFile(join(dir, `${c.name}.pub`)) },
      };
      const sig = await Deno.readFile(join(dir, `${c.name}.sig`));
      assert(await verifySignature(key, sig, data), `${c.scheme} signature must verify`);
      const other = new TextEncoder().encode('{"_type":"targetz"}');
      assert(!(await verifySignature(key, sig, other)), `${c.scheme} must not verify other data`);
    }
    // Ed25519: the raw 32-byte public key in hex, as TUF stores it.
    await openssl(["genpkey", "-algorithm", "ED25519", "-out", "ed.pem"], dir);
    await openssl(["pkey", "-in", "ed.pem", "-pubout", "-outform", "DER", "-out", "ed.der"], dir);
    await openssl([
      "pkeyutl",
      "-sign",
      "-rawin",
      "-inkey",
      "ed.pem",
      "-in",
      "data",
      "-out",
      "ed.sig",
    ], dir);
    const der = await Deno.readFile(join(dir, "ed.der"));
    const pub = Array.from(der.subarray(der.length - 32), (b) => b.toString(16).padStart(2, "0"))
      .join("");
    const key: Key = { keytype: "ed25519", scheme: "ed25519", keyval: { public: pub } };
    assert(await verifySignature(key, await Deno.readFile(join(dir, "ed.sig")), data));
    // An unknown scheme never verifies.
    assert(
      !(await verifySignature(
        { ...key, scheme: "ed448" },
        await Deno.readFile(join(dir, "ed.sig")),
        data,
      )),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const timestamp = (signed: Record<string, unknown>) =>
  enc({
    signed: {
      _type: "timestamp",
      spec_version: "1.0.31",
      version: 1,
      expires: "2030-01-01T00:00:00Z",
      meta: { "snapshot.json": { version: 1 } },
      ...signed,
    },
    signatures: [],
  });

Deno.test("metadata parsing enforces the format of section 4", () => {
  parseMetadata(timestamp({}), "timestamp");
  const bad: [Record<string, unknown>, string][] = [
    [{ _type: "snapshot" }, '_type must be "timestamp"'],
    [{ spec_version: "2.0.0" }, "unsupported spec_version"],
    [{ spec_version: "1.x" }, "is not"],
    [{ version: 0 }, "version must be an integer >= 1"],
    [{ version: 1.5 }, "version must be an integer >= 1"],
    [{ expires: "2030-01-01T00:00:00.123Z" }, "expires must be"],
    [
      { meta: { "snapshot.json": { version: 1 }, "x.json": { version: 1 } } },
      "exactly snapshot.json",
    ],
    [{ meta: { "snapshot.json": { version: 1, length: -1 } } }, "length must be an integer >= 0"],
  ];
  for (const [fields, message] of bad) {
    let err: unknown;
    try {
      parseMetadata(timestamp(fields), "timestamp");
    } catch (e) {
      err = e;
    }
    assert(err instanceof FormatError, `expected FormatError for ${JSON.stringify(fields)}`);
    assert(err.message.includes(message), `"${message}" not in "${err.message}"`);
  }
});

Deno.test("target path patterns: '*' stays within one path segment, '?' and [seq] work", () => {
  assert(pathMatches("releases/*", "releases/a.bin"));
  assert(!pathMatches("releases/*", "releases/x86/a.bin"));
  assert(pathMatches("releases/*/*", "releases/x86/a.bin"));
  assert(pathMatches("file-?.txt", "file-1.txt"));
  assert(!pathMatches("file-?.txt", "file-10.txt"));
  assert(pathMatches("v[0-9].bin", "v7.bin"));
  assert(!pathMatches("v[!0-9].bin", "v7.bin"));
  assert(pathMatches("*", "anything"));
  assert(!pathMatches("*", "a/b"));
  assert(pathMatches("a.b", "a.b") && !pathMatches("a.b", "axb"));
});

Deno.test("role names are quoted as one URL segment and file name", () => {
  assertEquals(quoteName("targets"), "targets");
  assertEquals(quoteName("../../etc/passwd"), "..%2F..%2Fetc%2Fpasswd");
  assertEquals(quoteName("a b?#é"), "a%20b%3F%23%C3%A9");
});
