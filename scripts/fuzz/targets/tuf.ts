/**
 * Fuzz target `tuf`: TUF 1.0 metadata of every role through the client's
 * `TrustedSet` (ota/tuf), in workflow order: trusted root (5.2), root
 * rotation (5.3), timestamp (5.4), snapshot (5.5), top-level targets and a
 * delegated role (5.6). The first input byte picks the role, the rest is
 * the file. The generator mutates the `signed` part and signs it again with
 * the right keys (inputs `[0x80, seed32]`, expanded before they run), so inputs get
 * past the signature checks to the rules behind them. Refusals must be `TufError`s; accepted metadata must hold
 * the format of section 4 (oracle).
 *
 * @module
 */
import * as ed from "@noble/ed25519";
import {
  canonicalBytes,
  type Key,
  keyId,
  pathMatches,
  TrustedSet,
  TufError,
} from "../../../ota/tuf/mod.ts";
import { concat, mutateJson, weirdValue } from "../_mutate.ts";
import { Rng } from "../_prng.ts";
import { type FuzzTarget, type Harness, OracleViolation } from "../_target.ts";

/** The client's clock: fixed, so expiry outcomes do not depend on the day. */
const NOW = new Date("2026-01-01T00:00:00Z");
const EXPIRES = "2030-01-01T00:00:00Z";
const ROLES = ["root", "timestamp", "snapshot", "targets", "role1", "trust-anchor"] as const;
const PATTERNS = [
  "modules/*",
  "modules/[a-z]*.wasm",
  "modules/[z-a]",
  "modules/[!]",
  "modules/[]]*",
  "modules/[",
  "modules/\\",
  "modules/(a|b)+",
  "modules/" + "*a".repeat(12) + "*b",
  "*/" + "*?".repeat(20) + "x",
];

interface Signer {
  key: Key;
  keyid: string;
  priv: Uint8Array;
}

async function signer(seed: number): Promise<Signer> {
  const priv = new Rng(0x70f, seed).bytes(32);
  const pub = await ed.getPublicKeyAsync(priv);
  const key: Key = {
    keytype: "ed25519",
    scheme: "ed25519",
    keyval: { public: Array.from(pub, (b) => b.toString(16).padStart(2, "0")).join("") },
  };
  return { key, keyid: keyId(key), priv };
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** Signs `signed` with `signers`; values canonical JSON cannot encode get a junk signature. */
async function sign(signed: unknown, signers: Signer[]): Promise<Uint8Array> {
  let data: Uint8Array | null = null;
  try {
    data = canonicalBytes(signed);
  } catch { /* floats, etc.: the client must refuse it with a FormatError */ }
  const signatures = await Promise.all(signers.map(async (s) => ({
    keyid: s.keyid,
    sig: data ? hex(await ed.signAsync(data, s.priv)) : "00".repeat(64),
  })));
  return new TextEncoder().encode(JSON.stringify({ signatures, signed }));
}

async function setup(): Promise<Harness> {
  const [rootK, targetsK, snapshotK, timestampK, delegK] = await Promise.all(
    [1, 2, 3, 4, 5].map(signer),
  );
  const role = (s: Signer) => ({ keyids: [s.keyid], threshold: 1 });
  const root = (version: number) => ({
    _type: "root",
    spec_version: "1.0.31",
    version,
    expires: EXPIRES,
    consistent_snapshot: true,
    keys: Object.fromEntries([rootK, targetsK, snapshotK, timestampK].map((s) => [s.keyid, s.key])),
    roles: {
      root: role(rootK),
      targets: role(targetsK),
      snapshot: role(snapshotK),
      timestamp: role(timestampK),
    },
  });
  const file = {
    length: 4,
    hashes: { sha256: "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589" },
  };
  const signed: Record<(typeof ROLES)[number], Record<string, unknown>> = {
    root: root(2),
    timestamp: {
      _type: "timestamp",
      spec_version: "1.0.31",
      version: 1,
      expires: EXPIRES,
      meta: { "snapshot.json": { version: 1 } },
    },
    snapshot: {
      _type: "snapshot",
      spec_version: "1.0.31",
      version: 1,
      expires: EXPIRES,
      meta: { "targets.json": { version: 1 }, "role1.json": { version: 1 } },
    },
    targets: {
      _type: "targets",
      spec_version: "1.0.31",
      version: 1,
      expires: EXPIRES,
      targets: { "releases/edged-x86_64": { ...file, custom: { kind: "release" } } },
      delegations: {
        keys: { [delegK.keyid]: delegK.key },
        roles: [{ name: "role1", ...role(delegK), terminating: false, paths: ["modules/*"] }],
      },
    },
    role1: {
      _type: "targets",
      spec_version: "1.0.31",
      version: 1,
      expires: EXPIRES,
      targets: { "modules/relay.wasm": file },
    },
    "trust-anchor": root(1),
  };
  const keysFor: Record<(typeof ROLES)[number], Signer[]> = {
    root: [rootK],
    timestamp: [timestampK],
    snapshot: [snapshotK],
    targets: [targetsK],
    role1: [delegK],
    "trust-anchor": [rootK],
  };
  const valid: Record<string, Uint8Array> = {};
  for (const r of ROLES) valid[r] = await sign(signed[r], keysFor[r]);

  // Structure-aware inputs: a mutated `signed` part, signed again with the
  // right keys (mostly). Signing is async and generation is not, so such an
  // input is the 5 bytes [0x80, seed32] and `run` builds the file from them.
  const resigned = async (seed: number): Promise<Uint8Array> => {
    const rng = new Rng(0x7af, seed);
    const sel = rng.below(ROLES.length);
    const r = ROLES[sel];
    let s = mutateJson(rng, signed[r]);
    if (rng.chance(0.1)) {
      s = { ...signed[r], [rng.pick(["meta", "targets", "keys", "roles"])]: weirdValue(rng) };
    }
    if (r === "targets" && rng.chance(0.3)) {
      // Delegation path patterns (section 4.5, shell-style) that trip regex-based matchers.
      const t = structuredClone(signed.targets) as {
        delegations: { roles: { paths: string[] }[] };
      };
      t.delegations.roles[0].paths = [rng.pick(PATTERNS)];
      s = t;
    }
    const signers = rng.chance(0.9) ? keysFor[r] : [rng.pick(Object.values(keysFor).flat())];
    return concat(Uint8Array.of(sel), await sign(s, signers));
  };

  return {
    seeds: ROLES.map((r, i) => concat(Uint8Array.of(i), valid[r])),
    generate: (r) => {
      if (r.chance(0.05)) {
        // An unknown field nested deeper than any JSON.stringify could build:
        // signed bytes are canonicalised before any signature is checked.
        const sel = r.below(ROLES.length);
        const d = r.pick([600, 2000, 5000, 7000]);
        const text = JSON.stringify(signed[ROLES[sel]]).slice(0, -1) +
          `,"x":${"[".repeat(d)}${"]".repeat(d)}}`;
        return concat(
          Uint8Array.of(sel),
          new TextEncoder().encode(`{"signatures":[],"signed":${text}}`),
        );
      }
      return Uint8Array.of(
        0x80,
        r.next() & 0xff,
        r.next() & 0xff,
        r.next() & 0xff,
        r.next() & 0xff,
      );
    },
    expand: async (input) =>
      input.length === 5 && input[0] === 0x80
        ? await resigned(new DataView(input.buffer, input.byteOffset).getUint32(1))
        : input,
    async run(input) {
      if (input.length === 0) return "refused:empty";
      const sel = input[0] % ROLES.length;
      const bytes = input.subarray(1);
      const name = ROLES[sel];
      if (name === "trust-anchor") {
        const ts = await TrustedSet.create(bytes, NOW);
        checkRoot(ts.root.signed);
        return "accepted:trust-anchor";
      }
      const ts = await TrustedSet.create(valid["trust-anchor"], NOW);
      if (name === "root") {
        checkRoot((await ts.updateRoot(bytes)).signed);
        return "accepted:root";
      }
      const steps: [string, Uint8Array][] = [
        ["timestamp", valid.timestamp],
        ["snapshot", valid.snapshot],
        ["targets", valid.targets],
        ["role1", valid.role1],
      ];
      for (const [step, good] of steps) {
        const b = step === name ? bytes : good;
        if (step === "timestamp") await ts.updateTimestamp(b);
        else if (step === "snapshot") await ts.updateSnapshot(b);
        else if (step === "targets") {
          checkTargets((await ts.updateTargets(b, "targets", "root")).signed);
        } else checkTargets((await ts.updateTargets(b, "role1", "targets")).signed);
        if (step === name) return `accepted:${name}`;
      }
      throw new Error("unreachable");
    },
    classify: (err) => err instanceof TufError ? err.name : undefined,
  };
}

/** Section 4.3: what an accepted root must look like. */
function checkRoot(s: Record<string, unknown>): void {
  const roles = s.roles as Record<string, { keyids: unknown; threshold: unknown }>;
  for (const r of ["root", "targets", "snapshot", "timestamp"]) {
    const t = roles?.[r]?.threshold;
    if (!Number.isSafeInteger(t) || (t as number) < 1) {
      throw new OracleViolation(`accepted root with roles.${r}.threshold ${JSON.stringify(t)}`);
    }
  }
  // No expiry check: a root may be expired until the final one (5.3.10).
  checkVersion(s);
}

/** Section 4.5: targets entries and delegations an accepted targets role must have. */
function checkTargets(s: Record<string, unknown>): void {
  checkCommon(s);
  for (const [path, t] of Object.entries(s.targets as Record<string, Record<string, unknown>>)) {
    if (!Number.isSafeInteger(t.length) || (t.length as number) < 0) {
      throw new OracleViolation(`accepted target ${path} with length ${JSON.stringify(t.length)}`);
    }
  }
  const d = s.delegations as { roles?: { paths?: string[]; name: string }[] } | undefined;
  // The delegation search matches paths against these patterns: it must not throw.
  for (const r of d?.roles ?? []) {
    for (const p of r.paths ?? []) {
      pathMatches(p, "modules/relay.wasm");
      pathMatches(p, `modules/${"a".repeat(40)}`);
    }
  }
}

function checkVersion(s: Record<string, unknown>): void {
  if (!Number.isSafeInteger(s.version) || (s.version as number) < 1) {
    throw new OracleViolation(`accepted version ${JSON.stringify(s.version)}`);
  }
}

function checkCommon(s: Record<string, unknown>): void {
  checkVersion(s);
  if (!(Date.parse(s.expires as string) > NOW.getTime())) {
    throw new OracleViolation(
      `accepted expired or unparsable expires ${JSON.stringify(s.expires)}`,
    );
  }
}

/** TUF metadata of every role through the trusted set. */
export const tufTarget: FuzzTarget = {
  name: "tuf",
  description:
    "TUF metadata, every role (ota/tuf TrustedSet: root, rotation, timestamp, snapshot, targets, delegated)",
  setup,
};
