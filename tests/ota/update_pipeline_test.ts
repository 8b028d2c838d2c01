/**
 * The updater in-process against a repository made with `edged repo` and
 * served over HTTP: refusals and fall-backs a device relies on. A tampered
 * delta falls back to the full release; a tampered release or tampered
 * metadata is refused and nothing changes; a staged rollout leaves devices
 * out by the hash of their id; a replayed older timestamp (rollback) and an
 * expired one (freeze) stop the check. (Wrong keys, too few signatures and
 * mix-and-match are the TUF client's own tests, tuf_test.ts; the updater
 * refreshes through that client before every decision.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  emptyState,
  serveRepository,
  SlotStore,
  TufError,
  UpdateError,
  Updater,
} from "../../ota/mod.ts";
import { startEdged } from "../_helpers/edged.ts";
import { publishRelease, repoCli, TRIPLE } from "./_update_helpers.ts";

async function findFile(dir: string, suffix: string): Promise<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) {
      const f = await findFile(p, suffix).catch(() => "");
      if (f) return f;
    } else if (e.name.endsWith(suffix)) return p;
  }
  throw new Error(`no file ending in ${suffix} under ${dir}`);
}

async function flipByte(path: string, at = 100): Promise<void> {
  const data = await Deno.readFile(path);
  data[at] ^= 0xff;
  await Deno.writeFile(path, data);
}

Deno.test({
  name: "updater: tampered delta → full download; tampered release or metadata → refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "edged-update-pipeline-" });
    const repo = join(dir, "repo");
    const rel = (v: string) => join(dir, `edged-${v}`);
    await repoCli("init", repo);
    for (const [v, seed] of [["1.0.0", 1], ["2.0.0", 2]] as const) {
      await publishRelease(repo, rel(v), v, { seed });
    }
    const server = serveRepository(repo, { port: 0, onListen: () => {} });
    const restarts: string[] = [];
    const updater = new Updater({
      dataDir: join(dir, "data"),
      url: `http://127.0.0.1:${server.addr.port}`,
      rootPath: join(repo, "metadata", "1.root.json"),
      triple: TRIPLE,
      deviceId: "pipeline-device",
      factoryVersion: "0.0.0-factory",
      factoryBinary: rel("1.0.0"),
      backoffMs: 1,
      retries: 1,
      requestRestart: (r) => restarts.push(r),
    });
    try {
      await t.step("the factory executable is recognised as 1.0.0 by its digest", async () => {
        const c = await updater.check();
        assert.equal(c.current, "1.0.0");
        assert.equal(c.available?.version, "2.0.0");
        assert.ok(c.available?.delta, "a delta maps the running digest");
      });

      await t.step("a tampered delta is refused and the whole release is used", async () => {
        await flipByte(await findFile(join(repo, "targets", "deltas"), ".bsdiff"), 40);
        const r = await updater.apply();
        assert.equal(r.outcome, "installed");
        assert.equal(r.method, "full");
        assert.match(r.deltaFallback!, /SHA-256|sha256|length/);
        assert.deepEqual(restarts, ["update to 2.0.0"]);
        const st = await updater.status();
        assert.equal(st.current.version, "2.0.0");
        assert.equal(st.current.sha256, st.slots[st.active!]!.sha256);
        assert.equal(st.trial?.version, "2.0.0");
        assert.ok(await updater.confirm());
      });

      await t.step("a tampered release is refused; the running version stays", async () => {
        await publishRelease(repo, rel("3.0.0"), "3.0.0", { seed: 3, deltas: 0 });
        // Consistent snapshots: targets/releases/<triple>/3.0.0/<sha256>.edged
        const target = await findFile(join(repo, "targets", "releases", TRIPLE, "3.0.0"), "edged");
        await flipByte(target);
        const before = await updater.store.read();
        await assert.rejects(() => updater.apply(), UpdateError);
        const st = await updater.status();
        assert.equal(st.phase, "failed");
        assert.match(st.last_error!, /SHA-256|expected/);
        assert.deepEqual(await updater.store.read(), before, "no slot or switch changed");
        await flipByte(target); // repair for later steps
      });

      await t.step("tampered targets metadata is refused by the TUF refresh", async () => {
        const md = join(repo, "metadata");
        const names = [...Deno.readDirSync(md)].map((e) => e.name)
          .filter((n) => /^\d+\.targets\.json$/.test(n))
          .sort((a, b) => parseInt(b) - parseInt(a));
        const file = join(md, names[0]);
        const original = await Deno.readTextFile(file);
        // A valid-looking change of a hash: the signature no longer matches
        // and the snapshot's recorded hash neither.
        await Deno.writeTextFile(file, original.replace(/"length": ?\d+/, '"length": 1'));
        try {
          await Deno.remove(join(updater.store.tufDir, "targets.json")).catch(() => {});
          await assert.rejects(() => updater.check(), TufError);
        } finally {
          await Deno.writeTextFile(file, original);
        }
        const c = await updater.check();
        assert.equal(c.available?.version, "3.0.0");
      });

      await t.step(
        "staged rollout: a 0 % release is not offered, the older one still is",
        async () => {
          await publishRelease(repo, rel("4.0.0"), "4.0.0", { seed: 4, rollout: 0, deltas: 1 });
          const c = await updater.check();
          assert.equal(c.available?.version, "3.0.0");
          assert.match(c.skipped!.join(), /4\.0\.0: not in its 0% rollout/);
        },
      );
      await step_rollback_attack(t, repo, updater);
    } finally {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A replayed older timestamp (rollback attack, TUF 5.4.3.2) is refused by the check. */
async function step_rollback_attack(t: Deno.TestContext, repo: string, updater: Updater) {
  await t.step("a replayed older timestamp is refused (rollback attack)", async () => {
    const ts = join(repo, "metadata", "timestamp.json");
    const old = await Deno.readFile(ts);
    await repoCli("refresh", repo);
    await updater.check(); // the device now trusts the newer timestamp
    const fresh = await Deno.readFile(ts);
    await Deno.writeFile(ts, old);
    try {
      await assert.rejects(() => updater.check(), TufError);
      assert.match((await updater.status()).last_error!, /version|rollback/i);
    } finally {
      await Deno.writeFile(ts, fresh);
    }
  });
}

Deno.test({
  name: "updater: expired timestamp metadata is refused (freeze attack)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "edged-update-freeze-" });
    const repo = join(dir, "repo");
    await repoCli("init", repo, "--expires", "timestamp=1s");
    await publishRelease(repo, join(dir, "edged-1.0.0"), "1.0.0", { seed: 1 });
    const server = serveRepository(repo, { port: 0, onListen: () => {} });
    try {
      const updater = new Updater({
        dataDir: join(dir, "data"),
        url: `http://127.0.0.1:${server.addr.port}`,
        rootPath: join(repo, "metadata", "1.root.json"),
        triple: TRIPLE,
        deviceId: "freeze-device",
        factoryVersion: "0.1.0",
      });
      await new Promise((r) => setTimeout(r, 1500));
      await assert.rejects(() => updater.check(), TufError);
      const st = await updater.status();
      assert.equal(st.phase, "failed");
      assert.match(st.last_error!, /expire/i);
    } finally {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a plain 'edged run' does not confirm a trial it was not started as", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "edged-update-notrial-" });
  const store = new SlotStore(dataDir);
  await store.ensure();
  const bin = new TextEncoder().encode("#!/bin/sh\necho 2.0.0\n");
  await Deno.writeFile(store.binaryPath("b"), bin, { mode: 0o755 });
  const sha = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bin)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const trial = { slot: "b" as const, version: "2.0.0", attempts: 0, since: "" };
  await store.write({
    ...emptyState(),
    active: "b",
    slots: { b: { version: "2.0.0", sha256: sha, installed_at: "", source: "full" } },
    trial,
  });
  const edged = await startEdged({ dataDir });
  try {
    await new Promise((r) => setTimeout(r, 600)); // several confirmation rounds, were they running
    assert.deepEqual((await store.read()).trial, trial);
    assert.ok(edged.lines.some((l) => l.includes("was not started from it")));
  } finally {
    await edged.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
