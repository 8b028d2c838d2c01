/**
 * Delegated targets roles (specification 5.6.7): pre-order depth-first
 * search in listed order, path patterns, terminating delegations, and
 * signatures checked against the delegating role's keys.
 */
import { join } from "node:path";
import { canonicalBytes, UnsignedMetadataError } from "../../ota/tuf/mod.ts";
import { generateKey, type SigningKey } from "../../ota/repo/mod.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  encode,
  forge,
  parse,
  type Served,
  serveNewRepo,
} from "./fixtures/tuf/harness.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const sha256 = async (b: Uint8Array) =>
  hex(new Uint8Array(await crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>)));

async function signWith(key: SigningKey, signed: object): Promise<Uint8Array> {
  const sig = hex(await key.sign(canonicalBytes(signed)));
  return encode({ signed, signatures: [{ keyid: key.keyid, sig }] });
}

function delegated(targets: Record<string, unknown>) {
  return {
    _type: "targets",
    spec_version: "1.0.31",
    version: 1,
    expires: "2099-01-01T00:00:00Z",
    targets,
  };
}

const entry = { length: 3, hashes: { sha256: "00".repeat(32) } };

/** Publishes targets v2 delegating to "team" (terminating) and "other", plus both roles. */
async function publishDelegations(s: Served, teamSigner: SigningKey, teamKey: SigningKey) {
  const md = join(s.dir, "metadata");
  const targets = parse(await s.read("metadata/targets.json")).signed as Record<string, unknown>;
  targets.version = 2;
  targets.delegations = {
    keys: { [teamKey.keyid]: teamKey.key },
    roles: [
      {
        name: "team",
        keyids: [teamKey.keyid],
        threshold: 1,
        terminating: true,
        paths: ["modules/team/*"],
      },
      {
        name: "other",
        keyids: [teamKey.keyid],
        threshold: 1,
        terminating: false,
        paths: ["modules/*"],
      },
    ],
  };
  const files: Record<string, Uint8Array> = {
    "2.targets.json": await forge(s.dir, "targets", targets),
    "1.team.json": await signWith(teamSigner, delegated({ "modules/team/a.wasm": entry })),
    "1.other.json": await signWith(
      teamKey,
      delegated({ "modules/team/b.wasm": entry, "modules/x.wasm": entry }),
    ),
  };
  const meta: Record<string, unknown> = {};
  for (const [name, bytes] of Object.entries(files)) {
    await Deno.writeFile(join(md, name), bytes);
    meta[name.replace(/^\d+\./, "")] = {
      version: Number(name.split(".")[0]),
      length: bytes.length,
    };
  }
  const snapshot = { ...parse(await s.read("metadata/snapshot.json")).signed, version: 2, meta };
  const snapBytes = await forge(s.dir, "snapshot", snapshot);
  await Deno.writeFile(join(md, "2.snapshot.json"), snapBytes);
  const ts = parse(await s.read("metadata/timestamp.json")).signed;
  ts.version = 2;
  ts.meta = {
    "snapshot.json": {
      version: 2,
      length: snapBytes.length,
      hashes: { sha256: await sha256(snapBytes) },
    },
  };
  await Deno.writeFile(join(md, "timestamp.json"), await forge(s.dir, "timestamp", ts));
}

Deno.test("delegations: depth-first in order, terminating roles end the search", async () => {
  const s = await serveNewRepo();
  const keyDir = await Deno.makeTempDir();
  try {
    const team = await generateKey(keyDir, "team");
    await publishDelegations(s, team, team);
    const client = await s.client();
    await client.refresh();
    const a = await client.getTargetInfo("modules/team/a.wasm");
    assertEquals(a?.path, "modules/team/a.wasm");
    assert(!s.requests.includes("/metadata/1.other.json"), "team listed it: other not needed");
    // "team" is terminating for modules/team/*: "other" is never asked, although it lists b.
    assertEquals(await client.getTargetInfo("modules/team/b.wasm"), undefined);
    assert(!s.requests.includes("/metadata/1.other.json"));
    // modules/x.wasm is not team's: the search goes on to "other".
    assertEquals((await client.getTargetInfo("modules/x.wasm"))?.path, "modules/x.wasm");
    assert(s.requests.includes("/metadata/1.other.json"));
  } finally {
    await s.close();
    await Deno.remove(keyDir, { recursive: true });
  }
});

Deno.test("delegations: a role signed by a key its delegator did not name is refused", async () => {
  const s = await serveNewRepo();
  const keyDir = await Deno.makeTempDir();
  try {
    const team = await generateKey(keyDir, "team");
    const rogue = await generateKey(keyDir, "rogue");
    await publishDelegations(s, rogue, team);
    const client = await s.client();
    await client.refresh();
    await assertRejects(
      () => client.getTargetInfo("modules/team/a.wasm"),
      UnsignedMetadataError,
      "team was signed by 0/1",
    );
  } finally {
    await s.close();
    await Deno.remove(keyDir, { recursive: true });
  }
});
