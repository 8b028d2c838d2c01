/**
 * `edged repo`: a repository made with the real CLI, releases with
 * BSDIFF40 deltas that Debian's bspatch applies, modules validated before
 * publishing, offline root keys, key rotation followed by the client, and
 * the static server's Range / ETag / If-None-Match behaviour (RFC 9110).
 */
import { join } from "node:path";
import { addModule, addRelease, RepoError, Repository, staticHandler } from "../../ota/repo/mod.ts";
import { TufClient } from "../../ota/tuf/mod.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  randomBytes,
  serveNewRepo,
} from "./fixtures/tuf/harness.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/tuf/", import.meta.url).pathname;
const TRIPLE = "aarch64-unknown-linux-gnu";

async function edged(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A release binary: shared random body with a few version-specific changes (as real builds differ). */
function build(version: number): Uint8Array {
  const bytes = randomBytes(200_000, 11);
  for (let i = 0; i < version * 3; i++) bytes[(i * 7919) % bytes.length] ^= version;
  return bytes;
}

Deno.test("edged repo init: keys 0600 (root keys offline), version 1 metadata, usage errors exit 2", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const dir = join(tmp, "repo");
    const offline = join(tmp, "offline");
    const r = await edged(
      "repo",
      "init",
      dir,
      "--threshold",
      "root=2",
      "--expires",
      "timestamp=2d,snapshot=10d",
      "--root-keys-dir",
      offline,
    );
    assertEquals(r.code, 0, r.stderr);
    const modes: Record<string, number> = {};
    for (const d of [join(dir, "keys"), offline]) {
      for await (const e of Deno.readDir(d)) {
        modes[e.name] = (await Deno.stat(join(d, e.name))).mode! & 0o777;
      }
      assertEquals((await Deno.stat(d)).mode! & 0o777, 0o700);
    }
    assertEquals(Object.values(modes), Object.values(modes).map(() => 0o600));
    assertEquals(Object.keys(modes).filter((n) => n.startsWith("root-")).length, 2);
    assertEquals(
      [...Deno.readDirSync(join(dir, "keys"))].some((e) => e.name.startsWith("root-")),
      false,
    );
    const names = [...Deno.readDirSync(join(dir, "metadata"))].map((e) => e.name).sort();
    for (const n of ["1.root.json", "1.snapshot.json", "1.targets.json", "timestamp.json"]) {
      assert(names.includes(n), `${n} missing`);
    }
    const root = JSON.parse(await Deno.readTextFile(join(dir, "metadata", "1.root.json"))).signed;
    assertEquals(root.roles.root.threshold, 2);
    assertEquals(root.consistent_snapshot, true);
    const ts = JSON.parse(await Deno.readTextFile(join(dir, "metadata", "timestamp.json"))).signed;
    const days = (Date.parse(ts.expires) - Date.now()) / 86400_000;
    assert(days > 1.9 && days <= 2, `timestamp expires in ${days} days`);

    assertEquals((await edged("repo", "init", dir)).code, 1, "a second init must fail");
    const usage = await edged("repo", "init", join(tmp, "x"), "--threshold", "mirror=2");
    assertEquals(usage.code, 2);
    assert(usage.stderr.includes("ROLE one of root, targets, snapshot, timestamp"), usage.stderr);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("releases get BSDIFF40 deltas from the previous K releases of the same triple", async () => {
  const s = await serveNewRepo({ deltas: 2 });
  const tmp = await Deno.makeTempDir();
  try {
    for (const v of [1, 2, 3]) {
      await Deno.writeFile(join(tmp, `v${v}`), build(v));
      await addRelease(s.repo, join(tmp, `v${v}`), { triple: TRIPLE, version: `1.${v}.0` });
    }
    await Deno.writeFile(join(tmp, "other"), build(9));
    await addRelease(s.repo, join(tmp, "other"), {
      triple: "x86_64-unknown-linux-gnu",
      version: "1.0.0",
    });
    await Deno.writeFile(join(tmp, "v10"), build(10));
    const added = await addRelease(s.repo, join(tmp, "v10"), { triple: TRIPLE, version: "1.10.0" });
    // Newest two earlier releases by version order (1.3.0, 1.2.0), never another triple's.
    assertEquals(added.map((a) => a.path), [
      `releases/${TRIPLE}/1.10.0/edged`,
      `deltas/${TRIPLE}/1.3.0_to_1.10.0.bsdiff`,
      `deltas/${TRIPLE}/1.2.0_to_1.10.0.bsdiff`,
    ]);
    await assertRejects(
      () => addRelease(s.repo, join(tmp, "v10"), { triple: TRIPLE, version: "1.10.0" }),
      RepoError,
      "already published",
    );

    const client = await s.client();
    const delta = (await client.getTargetInfo(`deltas/${TRIPLE}/1.3.0_to_1.10.0.bsdiff`))!;
    const from = (await client.getTargetInfo(`releases/${TRIPLE}/1.3.0/edged`))!;
    const to = (await client.getTargetInfo(`releases/${TRIPLE}/1.10.0/edged`))!;
    assertEquals(delta.custom, {
      kind: "delta",
      format: "BSDIFF40",
      triple: TRIPLE,
      from_version: "1.3.0",
      to_version: "1.10.0",
      from_sha256: from.hashes.sha256,
      to_sha256: to.hashes.sha256,
    });
    assert(delta.length < to.length / 10, `delta of ${delta.length} bytes`);
    // The reference bspatch turns the old release into the new one.
    const patch = await client.downloadTarget(delta, join(tmp, "patch"));
    const out = await new Deno.Command("bspatch", {
      args: [join(tmp, "v3"), join(tmp, "new"), patch],
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    assertEquals(await Deno.readFile(join(tmp, "new")), build(10));
  } finally {
    await s.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("modules are validated before publishing and carry their manifest", async () => {
  const s = await serveNewRepo();
  const tmp = await Deno.makeTempDir();
  try {
    const wasm = join(tmp, "m.wasm");
    const wat = await new Deno.Command("wat2wasm", {
      args: [join(FIXTURES, "module.wat"), "-o", wasm],
    }).output();
    assert(wat.success, new TextDecoder().decode(wat.stderr));
    const manifest = {
      name: "noop",
      version: "0.1.0",
      grants: {},
      limits: {
        memory_bytes: 65536,
        fuel_per_message: 100000,
        max_payload_bytes: 1024,
        messages_per_second: 10,
      },
    };
    await Deno.writeTextFile(join(tmp, "manifest.json"), JSON.stringify(manifest));
    const added = await addModule(s.repo, wasm, join(tmp, "manifest.json"));
    assertEquals(added.path, "modules/noop/0.1.0/noop.wasm");
    const client = await s.client();
    const info = (await client.getTargetInfo(added.path))!;
    assertEquals(info.custom?.kind, "module");
    const published = info.custom?.manifest as Record<string, unknown>;
    assertEquals(published.sha256, info.hashes.sha256);
    assertEquals(published.limits, manifest.limits);

    await Deno.writeFile(join(tmp, "bad.wasm"), new TextEncoder().encode("not wasm"));
    await assertRejects(
      () => addModule(s.repo, join(tmp, "bad.wasm"), join(tmp, "manifest.json")),
      RepoError,
      "module does not validate",
    );
  } finally {
    await s.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("refresh re-signs snapshot and timestamp; rotations need the (offline) root keys", async () => {
  const tmp = await Deno.makeTempDir();
  const offline = join(tmp, "offline");
  const s = await serveNewRepo({ rootKeysDir: offline });
  try {
    const client = await s.client();
    await client.refresh();
    const before = s.repo.timestamp.version;
    await (await Repository.open(s.dir)).refresh();
    await client.refresh();
    assertEquals(client.trusted!.timestamp!.signed.version, before + 1);
    assertEquals(client.trusted!.snapshot!.signed.version, before + 1);

    const noRoot = await edged("repo", "rotate", s.dir, "--role", "snapshot");
    assertEquals(noRoot.code, 1);
    assert(noRoot.stderr.includes("--root-keys-dir"), noRoot.stderr);
    const r = await edged(
      "repo",
      "rotate",
      s.dir,
      "--role",
      "snapshot",
      "--root-keys-dir",
      offline,
    );
    assertEquals(r.code, 0, r.stderr);
    const rr = await edged("repo", "rotate", s.dir, "--role", "root", "--root-keys-dir", offline);
    assertEquals(rr.code, 0, rr.stderr);
    await client.refresh();
    assertEquals(client.trusted!.root.signed.version, 3);
    const retired = [...Deno.readDirSync(join(offline, "retired"))].map((e) => e.name);
    assertEquals(retired.length, 1);
  } finally {
    await s.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("edged tuf-client speaks the conformance CLI protocol against edged repo serve", async () => {
  const tmp = await Deno.makeTempDir();
  const dir = join(tmp, "repo");
  await Repository.init(dir);
  await Deno.writeFile(join(tmp, "bin"), build(1));
  await addRelease(await Repository.open(dir), join(tmp, "bin"), {
    triple: TRIPLE,
    version: "2.0.0",
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", MAIN, "repo", "serve", dir, "--listen", "127.0.0.1:0"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let line = "";
    while (!line.includes("\n")) line += (await reader.read()).value ?? "";
    const base = /listening on (http:\/\/\S+\/)/.exec(line)![1];
    const md = join(tmp, "md");
    const common = ["--metadata-dir", md, "--metadata-url", `${base}metadata/`];
    assertEquals(
      (await edged("tuf-client", "--metadata-dir", md, "init", join(dir, "metadata/1.root.json")))
        .code,
      0,
    );
    assertEquals((await edged("tuf-client", ...common, "refresh")).code, 0);
    const target = `releases/${TRIPLE}/2.0.0/edged`;
    const dl = ["--target-base-url", `${base}targets/`, "--target-dir", join(tmp, "t"), "download"];
    await Deno.mkdir(join(tmp, "t"));
    const ok = await edged("tuf-client", ...common, "--target-name", target, ...dl);
    assertEquals(ok.code, 0, ok.stderr);
    assertEquals(await Deno.readFile(join(tmp, "t", encodeURIComponent(target))), build(1));
    const missing = await edged("tuf-client", ...common, "--target-name", "nope", ...dl);
    assertEquals(missing.code, 1);
    assert(missing.stderr.includes("TargetNotFoundError"), missing.stderr);
    for (const p of ["repo.json", "keys/", ".lock", "metadata/../repo.json"]) {
      const res = await fetch(`${base}${p}`);
      await res.body?.cancel();
      assertEquals(res.status, 404, p);
    }
    await reader.cancel();
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("static server: Range 206/416, ETag and If-None-Match 304, If-Range, no escaping the root", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "targets"));
    await Deno.mkdir(join(dir, "keys"));
    await Deno.writeTextFile(join(dir, "keys", "root-1.json"), "secret");
    await Deno.writeTextFile(join(dir, ".lock"), "");
    const body = randomBytes(100_000, 3);
    await Deno.writeFile(join(dir, "targets", "f.bin"), body);
    const handler = staticHandler(join(dir));
    const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
      handler(new Request(`http://x${path}`, { headers, method }));
    const full = await get("/targets/f.bin");
    assertEquals(full.status, 200);
    assertEquals(full.headers.get("accept-ranges"), "bytes");
    assertEquals(new Uint8Array(await full.arrayBuffer()), body);
    const etag = full.headers.get("etag")!;

    const part = await get("/targets/f.bin", { range: "bytes=10-19" });
    assertEquals(part.status, 206);
    assertEquals(part.headers.get("content-range"), "bytes 10-19/100000");
    assertEquals(new Uint8Array(await part.arrayBuffer()), body.subarray(10, 20));
    const open = await get("/targets/f.bin", { range: "bytes=99990-" });
    assertEquals(new Uint8Array(await open.arrayBuffer()), body.subarray(99990));
    const suffix = await get("/targets/f.bin", { range: "bytes=-5" });
    assertEquals(suffix.headers.get("content-range"), "bytes 99995-99999/100000");
    await suffix.body?.cancel();
    const beyond = await get("/targets/f.bin", { range: "bytes=100000-" });
    assertEquals(beyond.status, 416);
    assertEquals(beyond.headers.get("content-range"), "bytes */100000");

    const cached = await get("/targets/f.bin", { "if-none-match": `"other", ${etag}` });
    assertEquals(cached.status, 304);
    assertEquals(cached.headers.get("etag"), etag);
    const changed = await get("/targets/f.bin", { range: "bytes=0-9", "if-range": '"stale"' });
    assertEquals(changed.status, 200);
    await changed.body?.cancel();
    const resumed = await get("/targets/f.bin", { range: "bytes=0-9", "if-range": etag });
    assertEquals(resumed.status, 206);
    await resumed.body?.cancel();
    const head = await get("/targets/f.bin", {}, "HEAD");
    assertEquals([head.status, head.headers.get("content-length")], [200, "100000"]);

    for (
      const p of [
        "/keys/root-1.json",
        "/targets/../keys/root-1.json",
        "/%2e%2e/etc/passwd",
        "/.lock",
        "/targets",
      ]
    ) {
      const r = await get(p);
      assertEquals(r.status, 404, p);
      await r.body?.cancel();
    }
    assertEquals((await get("/targets/f.bin", {}, "POST")).status, 405);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a client rejects a repository whose root was swapped for another repository's", async () => {
  const a = await serveNewRepo();
  const b = await serveNewRepo();
  try {
    const metadataDir = await a.tempDir();
    await TufClient.init(metadataDir, await a.read("metadata/1.root.json"));
    const foreign = new TufClient({ metadataDir, metadataBaseUrl: `${b.url}metadata/` });
    await assertRejects(() => foreign.refresh(), Error, "timestamp was signed by 0/1");
  } finally {
    await a.close();
    await b.close();
  }
});
