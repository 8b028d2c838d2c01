/**
 * ota/delta: BSDIFF40 round trips, byte-for-byte interoperability with
 * Debian's bsdiff/bspatch 4.3, and refusal of every known malicious-patch
 * attack with its own error code and no NEW file left behind.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  applyPatch,
  bsdiff,
  bspatch,
  DeltaError,
  type DeltaErrorCode,
  diffFiles,
  type PatchInput,
} from "../../ota/delta/mod.ts";
import { concatBytes } from "../../lib/mod.ts";
import { bz2Compress } from "../../ota/delta/bz2/bz2.ts";
import { suffixArray } from "../../ota/delta/diffcore/diffcore.ts";
import { craftPatch, mutate, randomBytes, run } from "./_delta_helpers.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Applies `patch` in memory; returns the new bytes. */
async function patchBytes(
  old: Uint8Array,
  patch: PatchInput,
  options = {},
): Promise<{ bytes: Uint8Array; sha256: string }> {
  const parts: Uint8Array[] = [];
  const sink = new WritableStream<Uint8Array>({ write: (c) => void parts.push(c) });
  const { sha256 } = await bspatch(old, patch, sink, options);
  return { bytes: concatBytes(parts), sha256 };
}

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

async function expectRefused(
  old: Uint8Array,
  patch: Uint8Array,
  code: DeltaErrorCode,
): Promise<DeltaError> {
  let caught: unknown;
  try {
    await patchBytes(old, patch);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof DeltaError, `expected DeltaError ${code}, got ${caught}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

function streamOf(bytes: Uint8Array, chunk = 1000): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream({
    pull(c) {
      if (off >= bytes.length) return c.close();
      c.enqueue(bytes.slice(off, off + chunk));
      off += chunk;
    },
  });
}

Deno.test("suffix array (SA-IS in wasm) equals a naive sort on small and repetitive texts", () => {
  const naive = (t: Uint8Array) =>
    Array.from({ length: t.length + 1 }, (_, i) => i).sort((a, b) => {
      for (let i = 0;; i++) {
        if (a + i === t.length) return -1;
        if (b + i === t.length) return 1;
        if (t[a + i] !== t[b + i]) return t[a + i] - t[b + i];
      }
    });
  for (let trial = 0; trial < 1500; trial++) {
    const alphabet = [2, 3, 256][trial % 3];
    const raw = randomBytes(trial % 70, trial + 1);
    const text = raw.map((b) => b % alphabet);
    assert.deepEqual(Array.from(suffixArray(text)), naive(text), `text ${Array.from(text)}`);
  }
});

Deno.test("round trip: bsdiff then bspatch restores NEW for varied inputs", async () => {
  const cases: Array<[string, Uint8Array, Uint8Array]> = [
    ["both empty", new Uint8Array(0), new Uint8Array(0)],
    ["empty old", new Uint8Array(0), randomBytes(5000, 1)],
    ["empty new", randomBytes(5000, 2), new Uint8Array(0)],
    ["identical", randomBytes(20000, 3), randomBytes(20000, 3)],
    ["edited", randomBytes(200_000, 4), mutate(randomBytes(200_000, 4), 5)],
    ["unrelated", randomBytes(30_000, 6), randomBytes(40_000, 7)],
    ["runs", new Uint8Array(100_000).fill(7), new Uint8Array(120_000).fill(7)],
  ];
  for (const [name, old, nw] of cases) {
    const patch = await bsdiff(old, nw);
    const out = await patchBytes(old, patch);
    assert.deepEqual(out.bytes, nw, name);
    assert.equal(out.sha256, sha256(nw), name);
    const streamed = await patchBytes(old, streamOf(patch, 777));
    assert.deepEqual(streamed.bytes, nw, `${name} (streamed patch)`);
  }
});

Deno.test({
  name: "interop: our patches equal Debian bsdiff's byte for byte and Debian bspatch applies them",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const old = randomBytes(400_000, 11);
      const nw = mutate(old, 12);
      await Deno.writeFile(`${dir}/old`, old);
      await Deno.writeFile(`${dir}/new`, nw);
      assert.equal((await run("bsdiff", [`${dir}/old`, `${dir}/new`, `${dir}/deb.patch`])).code, 0);
      await diffFiles(`${dir}/old`, `${dir}/new`, `${dir}/ours.patch`);
      const ours = await Deno.readFile(`${dir}/ours.patch`);
      assert.deepEqual(ours, await Deno.readFile(`${dir}/deb.patch`));
      // Debian's bspatch applies ours, and our bspatch applies Debian's.
      assert.equal(
        (await run("bspatch", [`${dir}/old`, `${dir}/by-deb`, `${dir}/ours.patch`])).code,
        0,
      );
      assert.deepEqual(await Deno.readFile(`${dir}/by-deb`), nw);
      await applyPatch(`${dir}/old`, `${dir}/deb.patch`, `${dir}/by-us`);
      assert.deepEqual(await Deno.readFile(`${dir}/by-us`), nw);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "interop: a real executable pair (this deno binary, edited) both ways",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // 3 MB of real machine code keeps this test quick while exercising
      // realistic match structure.
      const file = await Deno.open(Deno.execPath());
      const old = new Uint8Array(3_000_000);
      let off = 0;
      while (off < old.length) off += (await file.read(old.subarray(off))) ?? old.length;
      file.close();
      const nw = mutate(old, 21);
      await Deno.writeFile(`${dir}/old`, old);
      await Deno.writeFile(`${dir}/new`, nw);
      assert.equal((await run("bsdiff", [`${dir}/old`, `${dir}/new`, `${dir}/deb.patch`])).code, 0);
      const ours = await bsdiff(old, nw);
      assert.deepEqual(ours, await Deno.readFile(`${dir}/deb.patch`));
      const { bytes } = await patchBytes(old, `${dir}/deb.patch`);
      assert.deepEqual(bytes, nw);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("header: bad magic, short header, negative and lying sizes", async () => {
  const old = randomBytes(100, 1);
  const good = craftPatch({ triples: [[10, 0, 0]], diff: new Uint8Array(10), newSize: 10 });
  const badMagic = good.slice();
  badMagic.set(new TextEncoder().encode("BSDIFF41"));
  await expectRefused(old, badMagic, "bad-magic");
  await expectRefused(old, good.subarray(0, 20), "truncated-header");
  await expectRefused(
    old,
    craftPatch({ triples: [], newSize: 10, ctrlLength: -5 }),
    "negative-length",
  );
  await expectRefused(old, craftPatch({ triples: [], newSize: -1 }), "negative-length");
  // A header announcing 1 PiB is refused before anything is allocated.
  await expectRefused(old, craftPatch({ triples: [], newSize: 2 ** 50 }), "size-limit");
  // Control block length larger than bzip2 could need for the announced size.
  await expectRefused(
    old,
    craftPatch({ triples: [[10, 0, 0]], newSize: 10, ctrlLength: 1_000_000 }),
    "bad-header",
  );
  // Plausible but longer than the patch actually is.
  await expectRefused(
    old,
    craftPatch({ triples: [[10, 0, 0]], diff: new Uint8Array(10), newSize: 10, diffLength: 500 }),
    "bzip2-truncated",
  );
});

Deno.test("streamed patch: a lying block length fails when the stream ends, not by allocating", async () => {
  const old = randomBytes(100, 1);
  // Claims a 1.2 GB control block (allowed for a 50 MB new file) but sends 60 bytes.
  const liar = craftPatch({
    triples: [[10, 0, 0]],
    newSize: 50_000_000,
    ctrlLength: 1_200_000_000,
  });
  const before = Deno.memoryUsage().rss;
  await assert.rejects(
    patchBytes(old, streamOf(liar)),
    (e: unknown) => e instanceof DeltaError && e.code === "bzip2-truncated",
  );
  assert.ok(Deno.memoryUsage().rss - before < 64 << 20);
});

Deno.test("CVE-2014-9862: negative lengths in a control triple are refused", async () => {
  const old = randomBytes(1000, 2);
  await expectRefused(
    old,
    craftPatch({ triples: [[-100, 0, 0]], newSize: 100 }),
    "negative-length",
  );
  await expectRefused(
    old,
    craftPatch({ triples: [[0, -100, 0]], newSize: 100 }),
    "negative-length",
  );
});

Deno.test("CVE-2020-14315 and out-of-range seeks: old position must stay inside OLD", async () => {
  const old = randomBytes(1000, 3);
  // Seek far past the end, then add: the sum overflows 32/64-bit positions in C.
  await expectRefused(
    old,
    craftPatch({
      triples: [[0, 0, 2n ** 62n], [10, 0, 0]],
      diff: new Uint8Array(10),
      newSize: 10,
    }),
    "seek-out-of-range",
  );
  // Negative seek before the old file (Debian's bspatch 4.3-23 reads out of bounds here).
  await expectRefused(
    old,
    craftPatch({ triples: [[0, 0, -500], [10, 0, 0]], diff: new Uint8Array(10), newSize: 10 }),
    "seek-out-of-range",
  );
  // A diff run reading past the end of OLD.
  await expectRefused(
    old,
    craftPatch({ triples: [[0, 0, 995], [10, 0, 0]], diff: new Uint8Array(10), newSize: 10 }),
    "seek-out-of-range",
  );
  // Lengths that run past the announced new size.
  await expectRefused(
    old,
    craftPatch({ triples: [[20, 0, 0]], diff: new Uint8Array(20), newSize: 10 }),
    "new-overflow",
  );
  await expectRefused(
    old,
    craftPatch({ triples: [[5, 2n ** 62n, 0]], diff: new Uint8Array(5), newSize: 10 }),
    "new-overflow",
  );
});

Deno.test("two million no-op control triples are refused quickly", async () => {
  // ~48 MB of zero triples bzip2s to a couple of hundred bytes.
  const zeros = new Uint8Array(24 * 2_000_000);
  const rawCtrl = bz2Compress(zeros);
  const tiny = craftPatch({ triples: [], rawCtrl, newSize: 1 });
  assert.ok(tiny.length < 400, `patch is ${tiny.length} bytes`);
  await expectRefused(new Uint8Array(10), tiny, "too-many-controls");
  // With a large announced size the work is still bounded by the control
  // block's real length: it runs out and is reported as cut short.
  const big = craftPatch({ triples: [], rawCtrl, newSize: 100_000_000 });
  await expectRefused(new Uint8Array(10), big, "bzip2-truncated");
});

Deno.test("decompression bomb: a block holding more than the control block uses", async () => {
  // 64 MiB of zeros in the diff block, of which the patch needs 16 bytes.
  const rawDiff = bz2Compress(new Uint8Array(64 << 20));
  const patch = craftPatch({ triples: [[16, 0, 0]], rawDiff, newSize: 16 });
  assert.ok(patch.length < 2000, `bomb patch is ${patch.length} bytes`);
  const before = Deno.memoryUsage().rss;
  await expectRefused(new Uint8Array(100), patch, "trailing-data");
  const grown = Deno.memoryUsage().rss - before;
  assert.ok(grown < 48 << 20, `RSS grew by ${grown} bytes while refusing a bomb`);
});

Deno.test("truncated and corrupt bzip2 blocks are refused", async () => {
  const old = randomBytes(100_000, 4);
  const nw = mutate(old, 5);
  const patch = await bsdiff(old, nw);
  // Cut inside the extra block (the last one).
  await expectRefused(old, patch.subarray(0, patch.length - 20), "bzip2-truncated");
  // Flip a byte inside the compressed diff block: the block CRC catches it.
  const ctrlLen = new DataView(patch.buffer).getUint32(8, true);
  const corrupt = patch.slice();
  corrupt[32 + ctrlLen + 100] ^= 0x55;
  const err = await (async () => {
    try {
      await patchBytes(old, corrupt);
    } catch (e) {
      return e;
    }
  })();
  assert.ok(err instanceof DeltaError, String(err));
  assert.ok(
    ["bzip2-corrupt", "bzip2-truncated", "trailing-data"].includes(err.code),
    `${err.code}: ${err.message}`,
  );
  // Not bzip2 at all.
  await expectRefused(
    old,
    craftPatch({ triples: [], rawCtrl: new TextEncoder().encode("hello world!"), newSize: 10 }),
    "bzip2-corrupt",
  );
});

Deno.test("applyPatch: a refused patch leaves no NEW file, and keeps an existing one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const old = randomBytes(1000, 8);
    await Deno.writeFile(`${dir}/old`, old);
    await Deno.writeFile(
      `${dir}/evil`,
      craftPatch({ triples: [[0, 0, -500], [10, 0, 0]], diff: new Uint8Array(10), newSize: 10 }),
    );
    await assert.rejects(applyPatch(`${dir}/old`, `${dir}/evil`, `${dir}/new`), DeltaError);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["evil", "old"]);
    await Deno.writeFile(`${dir}/new`, new TextEncoder().encode("previous"));
    await assert.rejects(applyPatch(`${dir}/old`, `${dir}/evil`, `${dir}/new`), DeltaError);
    assert.equal(await Deno.readTextFile(`${dir}/new`), "previous");
    // A wrong expected digest is refused before the rename, too.
    const nw = mutate(old, 9);
    await Deno.writeFile(`${dir}/good`, await bsdiff(old, nw));
    await assert.rejects(
      applyPatch(`${dir}/old`, `${dir}/good`, `${dir}/new`, { expectedSha256: "0".repeat(64) }),
      (e: unknown) => e instanceof DeltaError && e.code === "digest-mismatch",
    );
    assert.equal(await Deno.readTextFile(`${dir}/new`), "previous");
    const ok = await applyPatch(`${dir}/old`, `${dir}/good`, `${dir}/new`, {
      expectedSha256: sha256(nw),
    });
    assert.equal(ok.size, nw.length);
    assert.deepEqual(await Deno.readFile(`${dir}/new`), nw);
    assert.equal([...Deno.readDirSync(dir)].length, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: edged delta diff/patch exit 0, 1 on a bad patch, 2 on usage", async () => {
  const dir = await Deno.makeTempDir();
  const edged = (...args: string[]) =>
    run(Deno.execPath(), ["run", "--allow-read", "--allow-write", "--allow-env", MAIN, ...args]);
  try {
    const old = randomBytes(50_000, 30);
    const nw = mutate(old, 31);
    await Deno.writeFile(`${dir}/old`, old);
    await Deno.writeFile(`${dir}/new`, nw);
    const diff = await edged("delta", "diff", `${dir}/old`, `${dir}/new`, `${dir}/p`);
    assert.equal(diff.code, 0, diff.stderr);
    const patch = await edged("delta", "patch", `${dir}/old`, `${dir}/p`, `${dir}/out`);
    assert.equal(patch.code, 0, patch.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/out`), nw);
    const wrongDigest = await edged(
      "delta",
      "patch",
      "--sha256",
      "ab".repeat(32),
      `${dir}/old`,
      `${dir}/p`,
      `${dir}/out3`,
    );
    assert.equal(wrongDigest.code, 1);
    assert.match(wrongDigest.stderr, /digest-mismatch/);
    await assert.rejects(Deno.stat(`${dir}/out3`), Deno.errors.NotFound);

    await Deno.writeFile(
      `${dir}/evil`,
      craftPatch({ triples: [[-1, 0, 0]], newSize: 10 }),
    );
    const bad = await edged("delta", "patch", `${dir}/old`, `${dir}/evil`, `${dir}/out2`);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /negative-length/);
    await assert.rejects(Deno.stat(`${dir}/out2`), Deno.errors.NotFound);

    const usage = await edged("delta", "patch", `${dir}/old`);
    assert.equal(usage.code, 2, usage.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
