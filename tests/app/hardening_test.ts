/**
 * Issue 13, rows L1-L3 replayed against a real edged: a listen beyond
 * loopback is warned about, a token no client could send is refused at
 * configuration load, and the data directory is private to edged's user.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli, startEdged } from "../_helpers/edged.ts";
import { isLoopback } from "../../app/run.ts";

const WARNING = /THE API LISTENS ON .* WITHOUT TLS/;

Deno.test("L1: a listen beyond loopback gets a loud warning, loopback none", async () => {
  for (const [host, loud] of [["0.0.0.0", true], ["127.0.0.1", false]] as const) {
    const edged = await startEdged({ args: ["--listen", `${host}:0`], waitReady: false });
    try {
      const line = edged.lines.find((l) => WARNING.test(l));
      assert.equal(line !== undefined, loud, `${host}: ${line ?? "no warning"}`);
      if (line) {
        const rec = JSON.parse(line);
        assert.equal(rec.level, "WARNING");
        assert.match(rec.message, /bearer token/);
        assert.match(rec.message, /\/metrics/);
      }
    } finally {
      assert.equal(await edged.stop(), 0);
    }
  }
  for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]) {
    assert.equal(isLoopback(h), true, h);
  }
  for (const h of ["0.0.0.0", "::", "10.0.0.7", "192.168.1.2", "::ffff:10.0.0.1", "fe80::1"]) {
    assert.equal(isLoopback(h), false, h);
  }
});

Deno.test("L2: a token with whitespace or control characters stops the start (exit 2)", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "edged-token-" });
  try {
    for (
      const token of [
        "has spaces inside 0123456789",
        "tab\there-0123456789",
        "bell\x07-0123456789ab",
      ]
    ) {
      const r = await runCli(["run", "--data-dir", dataDir, "--listen", "127.0.0.1:0"], {
        EDGED_API_TOKEN: token,
      });
      assert.equal(r.code, 2, JSON.stringify(token));
      assert.match(r.stderr, /setting 'api_token' \(from EDGED_API_TOKEN\)/);
      assert.match(r.stderr, /no spaces, tabs or control characters/);
      assert.ok(!r.stderr.includes(token), "the token itself is not printed");
    }
    assert.deepEqual([...Deno.readDirSync(dataDir)], [], "nothing was written");
    // A stored token no client could send is refused too, naming the file.
    await Deno.writeTextFile(join(dataDir, "api-token"), "two words 0123456789abcdef\n");
    const r = await runCli(["run", "--data-dir", dataDir, "--listen", "127.0.0.1:0"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /api-token holds a token with spaces or control characters/);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** Every path below `dir`. */
function below(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory) out.push(...below(p));
  }
  return out;
}

Deno.test("L3: the data directory and everything in it become private at start", async () => {
  const parent = await Deno.makeTempDir({ prefix: "edged-perm-" });
  const dataDir = join(parent, "data");
  try {
    // A first run fills the directory; then everything is opened up, as in the report.
    await Deno.mkdir(dataDir, { mode: 0o755 });
    const first = await startEdged({
      dataDir,
      env: {
        EDGED_MODULES_PRELOAD: new URL("../../examples/modules/relay-wat", import.meta.url)
          .pathname,
      },
    });
    await first.stop();
    await Deno.mkdir(join(dataDir, "update", "slots"), { recursive: true });
    await Deno.writeTextFile(join(dataDir, "update", "state.json"), "{}");
    await Deno.writeFile(join(dataDir, "update", "slots", "edged-a"), new Uint8Array(8));
    await Deno.chmod(join(dataDir, "update", "slots", "edged-a"), 0o755);
    const paths = below(dataDir);
    for (const p of [dataDir, ...paths]) {
      Deno.chmodSync(p, Deno.statSync(p).isDirectory ? 0o755 : 0o644);
    }
    Deno.chmodSync(join(dataDir, "update", "slots", "edged-a"), 0o755);
    assert.ok(paths.some((p) => p.endsWith("edged.db")));
    assert.ok(paths.some((p) => p.includes(`${join(dataDir, "modules")}/`)));

    const second = await startEdged({ dataDir });
    try {
      const mode = (p: string) => Deno.statSync(p).mode! & 0o777;
      assert.equal(mode(dataDir), 0o700);
      const now = below(dataDir);
      for (const p of now) {
        const m = mode(p);
        assert.equal(m & 0o077, 0, `${p} is ${m.toString(8)}`);
      }
      assert.equal(mode(join(dataDir, "edged.db")), 0o600);
      assert.equal(mode(join(dataDir, "update", "state.json")), 0o600);
      assert.equal(mode(join(dataDir, "update", "slots", "edged-a")), 0o700, "still executable");
      assert.ok(now.some((p) => p.endsWith("edged.db-wal")), "files made since are private too");
      assert.ok(second.lines.some((l) => /made \d+ paths in the data directory private/.test(l)));
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("L3: what edged writes later, running or offline, is private from the start", async () => {
  const example = new URL("../../examples/modules/anomaly-score-c/", import.meta.url).pathname;
  const model = `${example}window-scorer.onnx`;
  const parent = await Deno.makeTempDir({ prefix: "edged-perm-later-" });
  const mode = (p: string) => Deno.statSync(p).mode! & 0o777;
  const open = (dir: string) =>
    below(dir).filter((p) => (mode(p) & 0o077) !== 0).map((p) => `${p} ${mode(p).toString(8)}`);
  try {
    // Offline: `edged model add --offline` writes the model and its `current` pointer.
    const offline = join(parent, "offline");
    const add = await runCli([
      "model",
      "add",
      "--offline",
      "--data-dir",
      offline,
      "window-scorer",
      model,
    ]);
    assert.equal(add.code, 0, add.stderr);
    assert.deepEqual(open(offline), []);

    // Running: a model and a module installed over the API, a reading stored.
    const dataDir = join(parent, "running");
    const edged = await startEdged({ dataDir });
    try {
      const form = new FormData();
      form.set("model", new File([await Deno.readFile(model)], "model.onnx"));
      const res = await edged.api("/api/v1/models/window-scorer", { method: "PUT", body: form });
      assert.equal(res.status, 201, await res.text());
      const m = new FormData();
      m.set("manifest", await Deno.readTextFile(`${example}manifest.json`));
      m.set("module", new File([await Deno.readFile(`${example}module.wasm`)], "module.wasm"));
      const put = await edged.api("/api/v1/modules/anomaly-score", { method: "PUT", body: m });
      assert.equal(put.status, 201, await put.text());
      const paths = below(dataDir);
      assert.ok(paths.some((p) => p.endsWith(join("window-scorer", "current"))), "model stored");
      assert.ok(paths.some((p) => p.includes(join(dataDir, "modules"))), "module stored");
      assert.deepEqual(open(dataDir), []);
    } finally {
      await edged.stop();
    }
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});
