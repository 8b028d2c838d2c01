/**
 * Fuzz target `bspatch`: BSDIFF40 patches (ota/delta) applied to a fixed old
 * file. Seeds are real patches from `bsdiffSync`; the generator assembles
 * patches from a header with lying fields (lengths, new size) and crafted
 * control blocks (negative, huge and out-of-range add/copy/seek values,
 * compressed with Debian's bzip2). An accepted patch is replayed through
 * Debian's `bspatch` and must produce the same bytes (differential oracle).
 *
 * @module
 */
import { bsdiffSync, bspatch, DeltaError } from "../../../ota/delta/mod.ts";
import { concat } from "../_mutate.ts";
import { Rng } from "../_prng.ts";
import { errorLabel, type FuzzTarget, type Harness, OracleViolation } from "../_target.ts";

/** The largest new file a fuzz patch may announce (keeps each input cheap). */
const MAX_NEW = 1 << 22;

function offtout(x: number, buf: Uint8Array, at: number): void {
  let y = Math.abs(x);
  const lo = y % 2 ** 32;
  y = (y - lo) / 2 ** 32;
  new DataView(buf.buffer, buf.byteOffset).setUint32(at, lo, true);
  new DataView(buf.buffer, buf.byteOffset).setUint32(at + 4, y % 2 ** 31, true);
  if (x < 0 || Object.is(x, -0)) buf[at + 7] |= 0x80;
}

async function bzip2(data: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command("bzip2", { args: ["-c", "-9"], stdin: "piped", stdout: "piped" })
    .spawn();
  const w = child.stdin.getWriter();
  await w.write(data);
  await w.close();
  const out = await child.output();
  if (!out.success) throw new Error("bzip2 failed");
  return out.stdout;
}

/** Splits a genuine patch into its three compressed blocks. */
function blocks(patch: Uint8Array): Uint8Array[] {
  const dv = new DataView(patch.buffer, patch.byteOffset);
  const x = Number(dv.getBigInt64(8, true));
  const y = Number(dv.getBigInt64(16, true));
  return [
    patch.subarray(32, 32 + x),
    patch.subarray(32 + x, 32 + x + y),
    patch.subarray(32 + x + y),
  ];
}

const LIES = [
  0,
  1,
  23,
  24,
  25,
  4095,
  4096,
  4097,
  -1,
  -0,
  2 ** 31,
  2 ** 32,
  2 ** 53 - 1,
  -(2 ** 53),
];

async function setup(): Promise<Harness> {
  const rng = new Rng(0xb5d1ff);
  const old = rng.bytes(4096);
  const news: Uint8Array[] = [
    new Uint8Array(0),
    old.subarray(0, 1),
    old.slice(),
    concat(old.subarray(0, 1000), rng.bytes(300), old.subarray(1500)),
    concat(rng.bytes(64), old, old.subarray(100, 900)),
    rng.bytes(2000),
  ];
  for (let i = 0; i < 64; i++) news[3][rng.below(news[3].length)] ^= 0x5a;
  const seeds = news.map((n) => bsdiffSync(old, n));
  const seedIndex = (b: Uint8Array) =>
    seeds.findIndex((s) => s.length === b.length && s.every((x, i) => x === b[i]));
  const genuine = seeds.map(blocks);

  // Control blocks with lying triples, compressed once by the reference bzip2.
  const ctrlBank: Uint8Array[] = [];
  for (let k = 0; k < 40; k++) {
    const n = rng.int(1, 4);
    const raw = new Uint8Array(24 * n);
    for (let t = 0; t < 3 * n; t++) {
      if (rng.chance(0.1)) raw.set(rng.bytes(8), 8 * t);
      else offtout(rng.chance(0.5) ? rng.pick(LIES) : rng.int(0, 5000), raw, 8 * t);
    }
    ctrlBank.push(await bzip2(raw));
  }
  const dataBank = [await bzip2(rng.bytes(4096)), await bzip2(new Uint8Array(0))];
  let diffs = 0;

  return {
    seeds,
    generate(r) {
      if (r.chance(0.3)) {
        // A genuine patch from a nearby old file: valid, so it is applied in
        // full and its output compared with Debian's bspatch.
        const other = old.slice();
        for (let i = r.int(0, 16); i > 0; i--) other[r.below(other.length)] = r.next() & 0xff;
        const next = other.slice(r.below(64), r.int(64, other.length));
        for (let i = r.int(0, 32); i > 0; i--) next[r.below(next.length)] ^= r.next() & 0xff;
        return bsdiffSync(other, next);
      }
      const g = r.pick(genuine);
      const ctrl = r.chance(0.7) ? r.pick(ctrlBank) : g[0];
      const diff = r.chance(0.7) ? g[1] : r.pick(dataBank);
      const extra = r.chance(0.7) ? g[2] : r.pick(dataBank);
      const head = new Uint8Array(32);
      head.set(new TextEncoder().encode("BSDIFF40"));
      offtout(r.chance(0.8) ? ctrl.length : r.pick(LIES), head, 8);
      offtout(r.chance(0.8) ? diff.length : r.pick(LIES), head, 16);
      offtout(r.chance(0.5) ? r.int(0, 8192) : r.pick(LIES), head, 24);
      return concat(head, ctrl, diff, extra);
    },
    async run(input) {
      const sink = new WritableStream<Uint8Array>();
      const parts: Uint8Array[] = [];
      const keep = new WritableStream<Uint8Array>({ write: (c) => void parts.push(c) });
      const res = await bspatch(old, input, input.length < 65536 ? keep : sink, {
        maxNewSize: MAX_NEW,
      });
      const si = seedIndex(input);
      const known = si >= 0 ? news[si].length : undefined;
      if (known !== undefined && res.size !== known) {
        throw new OracleViolation(`seed patch produced ${res.size} bytes, expected ${known}`);
      }
      // Differential check against Debian's bspatch for every 4th accepted non-seed patch.
      if (known === undefined && input.length < 65536 && diffs++ % 4 === 0) {
        const mine = concat(...parts);
        const theirs = await debianBspatch(old, input);
        if (
          theirs === null || theirs.length !== mine.length || theirs.some((x, i) => x !== mine[i])
        ) {
          throw new OracleViolation(
            `edged accepted a patch (new size ${res.size}) that Debian bspatch ` +
              (theirs === null ? "refuses" : `applies differently (${theirs.length} bytes)`),
          );
        }
      }
      return "accepted";
    },
    classify: (err) => err instanceof DeltaError ? errorLabel(err) : undefined,
  };
}

async function debianBspatch(old: Uint8Array, patch: Uint8Array): Promise<Uint8Array | null> {
  const dir = await Deno.makeTempDir({ prefix: "fuzz-bspatch-" });
  try {
    await Deno.writeFile(`${dir}/old`, old);
    await Deno.writeFile(`${dir}/p`, patch);
    const out = await new Deno.Command("bspatch", {
      args: [`${dir}/old`, `${dir}/new`, `${dir}/p`],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success ? await Deno.readFile(`${dir}/new`) : null;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** BSDIFF40 patches through the hardened streaming bspatch. */
export const bspatchTarget: FuzzTarget = {
  name: "bspatch",
  description: "BSDIFF40 patches (ota/delta bspatch), differential against Debian bspatch",
  setup,
};
