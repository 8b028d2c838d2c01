/** The shared progress display: a redrawn bar on a terminal, plain lines otherwise. */
import assert from "node:assert/strict";
import { createProgress, formatBytes, formatDuration } from "../../lib/mod.ts";

function sink(terminal: boolean) {
  const dec = new TextDecoder();
  let out = "";
  return {
    stream: {
      writeSync(p: Uint8Array) {
        out += dec.decode(p);
        return p.byteLength;
      },
      isTerminal: () => terminal,
    },
    text: () => out,
  };
}

Deno.test("plain output prints one line per 10 % step and never a control character", () => {
  const s = sink(false);
  const p = createProgress("patch", { total: 1000, stream: s.stream });
  for (let i = 0; i <= 1000; i += 1) p.update(i);
  p.done();
  const lines = s.text().trimEnd().split("\n");
  assert.equal(lines.length, 11);
  assert.match(lines[0], /^patch: 0% \(0 of 1000\)$/);
  assert.match(lines[10], /^patch: 100% \(1000 of 1000\)$/);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(s.text(), /[\r\x1b]/);
});

Deno.test("a terminal gets one bar redrawn in place, ending with a newline", () => {
  const s = sink(true);
  const p = createProgress("download", { total: 2048, unit: "bytes", stream: s.stream, width: 10 });
  p.update(0);
  p.update(1024); // within the redraw interval: skipped
  p.update(2048); // 100 % always draws
  p.done("done");
  const out = s.text();
  assert.ok(out.startsWith("\rdownload [----------]   0% 0 B of 2.0 KiB"), out);
  assert.ok(out.includes("\rdownload [##########] 100% 2.0 KiB of 2.0 KiB"), out);
  assert.equal(out.split("\r").length, 3, "two draws");
  assert.match(out, /\ndownload: done in \d+ s\n$/);
});

Deno.test("quiet prints nothing; bad options fail early", () => {
  const s = sink(true);
  const p = createProgress("x", { total: 1, quiet: true, stream: s.stream });
  p.update(1);
  p.done("ok");
  assert.equal(s.text(), "");
  assert.throws(() => createProgress("x", { width: 0 }), RangeError);
  assert.throws(() => createProgress("x", { stepPercent: 0 }), RangeError);
});

Deno.test("amounts and durations read as people write them", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(40 * 1024 * 1024), "40.0 MiB");
  assert.equal(formatDuration(42), "42 s");
  assert.equal(formatDuration(185), "3 min 5 s");
  assert.equal(formatDuration(7800), "2 h 10 min");
  assert.equal(formatDuration(3 * 86400 + 4 * 3600), "3 d 4 h");
});
