/**
 * A release engineer's first hour, as docs/releases.md "Try the whole cycle
 * on one machine" tells it, block by block in one shell: a repository, a
 * device under its launcher taking an update, a module deployed from the
 * repository, the next release and a rollback, then everything stopped.
 */
import assert from "node:assert/strict";
import { freePort, ROOT, session } from "./_docs.ts";

const BLOCKS = [
  "releases-setup",
  "releases-builds",
  "releases-repo",
  "releases-device",
  "releases-update",
  "releases-module",
  "releases-rollback",
  "releases-stop",
];

Deno.test("releases.md: repository, update through the launcher, module, rollback, stop", async () => {
  const version = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).version;
  const tmp = await Deno.makeTempDir({ prefix: "edged-releases-doc-" });
  const devicePort = freePort();
  try {
    const r = await session("docs/releases.md", BLOCKS, {
      cwd: ROOT,
      ports: { 8081: devicePort, 8090: freePort() },
      env: { TMPDIR: tmp },
      timeoutMs: 300_000,
    });
    const out = r.out;
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.deepEqual(Object.keys(out), BLOCKS, "every block ran");

    assert.match(out["releases-repo"], /^releases\/x86_64-unknown-linux-gnu\/1\.1\.0\/edged\t/m);
    assert.match(out["releases-repo"], /^modules\/relay\/1\.0\.0\/relay\.wasm\t.*\tmodule$/m);
    assert.match(
      out["releases-device"],
      new RegExp(`^running {3}${version} from the factory`, "m"),
    );

    const update = out["releases-update"];
    assert.match(update, /"available": \{\s*"version": "1\.1\.0"/);
    assert.match(update, /"outcome": "installed"/);
    assert.match(update, /^running {3}1\.1\.0 from slot a$/m);
    assert.match(update, /starting slot a \(1\.1\.0\) on trial/);
    assert.match(update, /confirmed 1\.1\.0: healthy/);

    const [deployed, answer] = out["releases-module"].trim().replace(/\}\{/, "}\n{").split("\n");
    assert.deepEqual(JSON.parse(deployed), { name: "relay", version: "1.0.0" });
    assert.deepEqual(JSON.parse(answer).published, [{
      topic: "uplink/telemetry/relay",
      payload: 1,
    }]);

    const rollback = out["releases-rollback"];
    assert.match(rollback, /"rolled_back": \{\s*"from": "1\.2\.0",\s*"to": "1\.1\.0"/);
    assert.match(rollback, /^running {3}1\.1\.0 from slot a$/m);
    assert.match(rollback, /^rollback {2}1\.2\.0 → 1\.1\.0 at \S+: requested by operator$/m);

    // The stop block stopped the launcher and the edged it ran: nothing answers any more.
    const alive = await fetch(`http://127.0.0.1:${devicePort}/healthz`).then(
      async (res) => (await res.body?.cancel(), true),
      () => false,
    );
    assert.equal(alive, false, "edged stopped with its launcher");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
