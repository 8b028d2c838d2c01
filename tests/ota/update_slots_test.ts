/**
 * A/B slot state and boot decisions on a real data directory: adoption of
 * the factory executable, the boot counter, rollback after N failed starts,
 * refusal to start a damaged slot, confirmation, manual rollback; and the
 * rollout and version policy.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli } from "../_helpers/edged.ts";
import {
  compareVersions,
  confirmBoot,
  inRollout,
  jittered,
  prepareBoot,
  rolledBack,
  rolloutPosition,
  SlotStore,
  UpdateStateError,
} from "../../ota/mod.ts";

function eq(actual: unknown, expected: unknown): void {
  assert.deepStrictEqual(actual, expected);
}

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A data dir with a factory executable adopted into slot a and `version` in slot b on trial. */
async function withTrial(version = "2.0.0") {
  const dir = await Deno.makeTempDir();
  const factory = join(dir, "factory");
  await Deno.writeTextFile(factory, "#!/bin/sh\necho factory\n");
  const store = new SlotStore(join(dir, "data"));
  const opts = { maxBootAttempts: 2, factoryBinary: factory, factoryVersion: "1.0.0" };
  const first = await prepareBoot(store, opts);
  eq(first.slot, "a");
  eq(first.trial, false);
  const newBin = new TextEncoder().encode(`#!/bin/sh\necho ${version}\n`);
  await Deno.writeFile(store.binaryPath("b"), newBin, { mode: 0o755 });
  await store.update((s) => ({
    ...s,
    active: "b",
    previous: "a",
    slots: {
      ...s.slots,
      b: { version, sha256: "", installed_at: "", source: "full" as const },
    },
    trial: { slot: "b", version, attempts: 0, since: "" },
  }));
  const sha = await sha256(newBin);
  await store.update((s) => {
    s.slots.b!.sha256 = sha;
    return s;
  });
  return { dir, store, opts };
}

Deno.test("factory executable is adopted as slot a, byte for byte, with its digest", async () => {
  const { dir, store } = await withTrial();
  try {
    const s = await store.read();
    eq(s.slots.a!.source, "factory");
    eq(
      await Deno.readTextFile(store.binaryPath("a")),
      await Deno.readTextFile(join(dir, "factory")),
    );
    eq((await Deno.stat(store.binaryPath("a"))).mode! & 0o111, 0o111);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("boot counter: counted before each start, rollback after max_boot_attempts", async () => {
  const { dir, store, opts } = await withTrial();
  try {
    let d = await prepareBoot(store, opts);
    eq([d.slot, d.trial, d.state.trial!.attempts], ["b", true, 1]);
    eq(await Deno.readLink(store.currentLink), "slots/b/edged");
    d = await prepareBoot(store, opts); // the first start died before confirming
    eq([d.slot, d.trial, d.state.trial!.attempts], ["b", true, 2]);
    d = await prepareBoot(store, opts); // and the second
    eq([d.slot, d.trial], ["a", false]);
    assert.match(d.rolledBack!, /did not confirm a healthy start in 2 attempts/);
    eq(d.state.last_rollback!.from, "2.0.0");
    eq(d.state.last_rollback!.to, "1.0.0");
    eq(d.state.rejected, ["2.0.0"]);
    eq(d.state.previous, null);
    eq(await Deno.readLink(store.currentLink), "slots/a/edged");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a confirmed trial stays; the next start is no trial", async () => {
  const { dir, store, opts } = await withTrial();
  try {
    await prepareBoot(store, opts);
    eq(await confirmBoot(store, "a"), false);
    eq(await confirmBoot(store, "b"), true);
    const d = await prepareBoot(store, opts);
    eq([d.slot, d.trial, d.state.previous], ["b", false, "a"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a damaged active slot is never started: rollback to the previous one", async () => {
  const { dir, store, opts } = await withTrial();
  try {
    await confirmBoot(store, "b");
    await Deno.writeTextFile(store.binaryPath("b"), "#!/bin/sh\necho flipped bits\n");
    const d = await prepareBoot(store, opts);
    eq(d.slot, "a");
    assert.match(d.rolledBack!, /slot b does not match its recorded SHA-256/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("manual rollback keeps the version rolled back from; none without a previous slot", async () => {
  const { dir, store, opts } = await withTrial();
  try {
    await confirmBoot(store, "b");
    const s = rolledBack(await store.read(), "operator", { keepFrom: true });
    eq([s.active, s.previous, s.rejected], ["a", "b", ["2.0.0"]]);
    const s2 = rolledBack(s, "again", { keepFrom: true });
    eq([s2.active, s2.previous], ["b", "a"]);
    assert.throws(() => rolledBack({ ...s, previous: null }, "x"), UpdateStateError);
    // Temporary files of an install killed mid-write are removed at boot.
    await Deno.writeTextFile(join(store.slotDir("a"), ".tmp-123"), "half");
    await prepareBoot(store, opts);
    eq([...Deno.readDirSync(store.slotDir("a"))].map((e) => e.name), ["edged"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state.json is replaced by rename only (no torn file) and rejects unknown formats", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new SlotStore(dir);
    await store.write({ ...(await store.read()), active: "a" });
    eq(
      [...Deno.readDirSync(store.root)].map((e) => e.name).filter((n) => n.startsWith(".")),
      [],
    );
    await Deno.writeTextFile(store.statePath, JSON.stringify({ format: 9 }));
    await assert.rejects(() => store.read(), UpdateStateError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("versions compare by SemVer precedence", () => {
  const sorted = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-beta",
    "1.0.0",
    "1.2.0",
    "1.10.0",
    "2.0.0",
  ];
  for (let i = 0; i + 1 < sorted.length; i++) {
    assert.ok(compareVersions(sorted[i], sorted[i + 1]) < 0, `${sorted[i]} < ${sorted[i + 1]}`);
  }
  eq(compareVersions("1.0.0+build.5", "1.0.0"), 0);
});

Deno.test("staged rollout: stable per device, monotonic in the percentage, about right", async () => {
  const p = await rolloutPosition("pump-7", "2.0.0");
  eq(await rolloutPosition("pump-7", "2.0.0"), p);
  assert.ok(p >= 0 && p < 100);
  eq(await inRollout("pump-7", "2.0.0", undefined), true);
  eq(await inRollout("pump-7", "2.0.0", 0), false);
  eq(await inRollout("pump-7", "2.0.0", 100), true);
  eq(await inRollout("pump-7", "2.0.0", Math.ceil(p)), p < Math.ceil(p));
  let inTen = 0;
  for (let i = 0; i < 2000; i++) {
    if (await inRollout(`dev-${i}`, "2.0.0", 10)) {
      inTen++;
      assert.ok(await inRollout(`dev-${i}`, "2.0.0", 50), "raising the percentage keeps devices");
    }
  }
  assert.ok(inTen > 140 && inTen < 260, `10% of 2000 devices, got ${inTen}`);
  for (let i = 0; i < 100; i++) {
    const j = jittered(1000, 0.2);
    assert.ok(j >= 800 && j <= 1200);
  }
});

Deno.test("edged update boot (a unit's ExecStartPre) adopts, counts and links current", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const factory = join(dir, "edged");
    await Deno.writeTextFile(factory, "#!/bin/sh\necho factory\n");
    const env = { EDGED_UPDATE_BINARY: factory, EDGED_API_TOKEN: "test-token-0123456789abcdef" };
    const r = await runCli(["update", "boot", "--data-dir", join(dir, "data")], env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    eq([out.slot, out.trial, out.rolled_back], ["a", false, null]);
    eq(
      await Deno.realPath(join(dir, "data", "update", "current")),
      await Deno.realPath(join(dir, "data", "update", "slots", "a", "edged")),
    );
    const offline = await runCli([
      "update",
      "rollback",
      "--offline",
      "--data-dir",
      join(dir, "data"),
    ], env);
    eq(offline.code, 1);
    assert.match(offline.stderr, /no previous slot/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
