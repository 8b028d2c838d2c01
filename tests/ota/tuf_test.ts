/**
 * The TUF client against a real repository (made by `edged repo`'s
 * Repository, served over HTTP on 127.0.0.1), and the attacks of the
 * specification's threat model (section 1.5.2) each refused with the error
 * that names it.
 */
import { join } from "node:path";
import {
  BadVersionError,
  canonicalBytes,
  DownloadLengthError,
  DownloadTimeoutError,
  ExpiredMetadataError,
  HttpFetcher,
  LengthOrHashMismatchError,
  TufClient,
  UnsignedMetadataError,
} from "../../ota/tuf/mod.ts";
import { addRelease, generateKey } from "../../ota/repo/mod.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  bytesResponse,
  drip,
  encode,
  forge,
  parse,
  randomBytes,
  serveNewRepo,
} from "./fixtures/tuf/harness.ts";

const TRIPLE = "x86_64-unknown-linux-gnu";
const DAY = 86400_000;

async function withRelease(options = {}) {
  const s = await serveNewRepo(options);
  const file = join(await s.tempDir(), "release.bin");
  await Deno.writeFile(file, randomBytes(50_000, 7));
  await addRelease(s.repo, file, { triple: TRIPLE, version: "1.0.0", rolloutPercent: 25 });
  return s;
}

const RELEASE = `releases/${TRIPLE}/1.0.0/edged`;

Deno.test("client refreshes, finds a release with its custom fields and downloads it verified", async () => {
  const s = await withRelease();
  try {
    const client = await s.client();
    await client.refresh();
    assertEquals(s.requests.filter((p) => p.startsWith("/metadata/")), [
      "/metadata/2.root.json",
      "/metadata/timestamp.json",
      "/metadata/2.snapshot.json",
      "/metadata/2.targets.json",
    ]);
    const info = await client.getTargetInfo(RELEASE);
    assert(info);
    assertEquals(info.custom, {
      kind: "release",
      triple: TRIPLE,
      version: "1.0.0",
      rollout_percent: 25,
    });
    assertEquals(info.length, 50_000);
    assertEquals(await client.getTargetInfo("releases/nope"), undefined);
    assertEquals(client.listTargets().map((t) => t.path), [RELEASE]);
    const dest = await client.downloadTarget(info);
    assertEquals(await Deno.readFile(dest), randomBytes(50_000, 7));
    assertEquals(await client.findCachedTarget(info), dest);
    // Consistent snapshots: the target URL carries its hash.
    assert(client.targetUrl(info).endsWith(`1.0.0/${info.hashes.sha256}.edged`));
    // Stored metadata uses plain names.
    const names = [];
    for await (const e of Deno.readDir(join(dest, ".."))) {
      if (e.name.endsWith(".json")) names.push(e.name);
    }
    assertEquals(names.sort(), ["root.json", "snapshot.json", "targets.json", "timestamp.json"]);
  } finally {
    await s.close();
  }
});

Deno.test("client follows a chain of root rotations and accepts rotated timestamp keys", async () => {
  const s = await withRelease({ thresholds: { root: 2 } });
  try {
    const client = await s.client();
    await client.refresh();
    await s.repo.rotate("root");
    await s.repo.rotate("root", { threshold: 1 });
    await s.repo.rotate("timestamp");
    await client.refresh();
    assertEquals(client.trusted!.root.signed.version, 4);
    assertEquals(client.trusted!.timestamp!.signed.version, s.repo.timestamp.version);
    assert(s.requests.includes("/metadata/4.root.json"));
  } finally {
    await s.close();
  }
});

Deno.test("attack: tampered target is refused and never lands at the destination", async () => {
  const s = await withRelease();
  try {
    const client = await s.client();
    const info = (await client.getTargetInfo(RELEASE))!;
    const url = new URL(client.targetUrl(info)).pathname;
    const evil = randomBytes(50_000, 8);
    s.override = (p) => (p === url ? bytesResponse(evil) : undefined);
    const dest = join(await s.tempDir(), "edged.new");
    await assertRejects(
      () => client.downloadTarget(info, dest),
      LengthOrHashMismatchError,
      "sha256",
    );
    await assertRejects(() => Deno.stat(dest), Deno.errors.NotFound);
    assertEquals([...Deno.readDirSync(join(dest, ".."))].length, 0);
  } finally {
    await s.close();
  }
});

Deno.test("attack: tampered metadata (timestamp fields changed, signature kept) is refused", async () => {
  const s = await withRelease();
  try {
    const md = parse(await s.read("metadata/timestamp.json"));
    md.signed.expires = "2099-01-01T00:00:00Z";
    s.override = (p) => (p === "/metadata/timestamp.json" ? bytesResponse(encode(md)) : undefined);
    const client = await s.client();
    await assertRejects(
      () => client.refresh(),
      UnsignedMetadataError,
      "timestamp was signed by 0/1",
    );
  } finally {
    await s.close();
  }
});

Deno.test("attack: snapshot not matching the hash in timestamp is refused", async () => {
  const s = await withRelease();
  try {
    const snap = parse(await s.read("metadata/2.snapshot.json"));
    const tampered = encode({ ...snap, signed: { ...snap.signed, extra: 1 } });
    s.override = (p) => (p === "/metadata/2.snapshot.json" ? bytesResponse(tampered) : undefined);
    const client = await s.client();
    await assertRejects(() => client.refresh(), LengthOrHashMismatchError, "snapshot.json");
  } finally {
    await s.close();
  }
});

Deno.test("attack: timestamp signed by a key root does not list is refused", async () => {
  const s = await withRelease();
  try {
    const rogueDir = await s.tempDir();
    const rogue = await generateKey(rogueDir, "timestamp");
    const md = parse(await s.read("metadata/timestamp.json"));
    md.signed.version = 99;
    const sig = await rogue.sign(canonicalBytes(md.signed));
    const signatures = [{
      keyid: rogue.keyid,
      sig: Array.from(sig, (b) => b.toString(16).padStart(2, "0")).join(""),
    }];
    s.override = (p) =>
      p === "/metadata/timestamp.json"
        ? bytesResponse(encode({ signed: md.signed, signatures }))
        : undefined;
    const client = await s.client();
    await assertRejects(
      () => client.refresh(),
      UnsignedMetadataError,
      "timestamp was signed by 0/1",
    );
  } finally {
    await s.close();
  }
});

Deno.test("attack: too few signatures for the threshold is refused", async () => {
  const s = await withRelease({ thresholds: { timestamp: 2 } });
  try {
    const md = parse(await s.read("metadata/timestamp.json"));
    assertEquals(md.signatures.length, 2);
    md.signatures.pop();
    s.override = (p) => (p === "/metadata/timestamp.json" ? bytesResponse(encode(md)) : undefined);
    const client = await s.client();
    await assertRejects(
      () => client.refresh(),
      UnsignedMetadataError,
      "timestamp was signed by 1/2",
    );
    // The same signature twice does not count twice (section 4.1: keyids unique).
    md.signatures.push(md.signatures[0]);
    await assertRejects(() => client.refresh(), Error, "two signatures with keyid");
  } finally {
    await s.close();
  }
});

Deno.test("attack: expired timestamp is refused (freeze)", async () => {
  const s = await withRelease({ expires: { timestamp: "1d" } });
  try {
    const client = await s.client({ now: () => new Date(Date.now() + 2 * DAY) });
    await assertRejects(() => client.refresh(), ExpiredMetadataError, "timestamp expired");
  } finally {
    await s.close();
  }
});

Deno.test("attack: frozen repository (same metadata served past its expiry) is refused", async () => {
  const s = await withRelease({ expires: { timestamp: "1d" } });
  try {
    let now = new Date();
    const client = await s.client({ now: () => now });
    await client.refresh();
    now = new Date(Date.now() + 2 * DAY);
    await assertRejects(() => client.refresh(), ExpiredMetadataError, "timestamp expired");
  } finally {
    await s.close();
  }
});

Deno.test("attack: replayed older timestamp and snapshot (rollback) are refused", async () => {
  const s = await withRelease();
  try {
    const oldTimestamp = await s.read("metadata/timestamp.json");
    await s.repo.refresh();
    const client = await s.client();
    await client.refresh();
    const trusted = client.trusted!.timestamp!.signed.version;
    s.override = (
      p,
    ) => (p === "/metadata/timestamp.json" ? bytesResponse(oldTimestamp) : undefined);
    await assertRejects(
      () => client.refresh(),
      BadVersionError,
      `timestamp version ${trusted - 1} is older than trusted ${trusted}`,
    );
  } finally {
    await s.close();
  }
});

Deno.test("attack: snapshot rolling targets back to an older version is refused", async () => {
  const s = await withRelease();
  try {
    const client = await s.client();
    await client.refresh(); // trusts targets v2
    // An attacker with the online snapshot and timestamp keys points at targets v1.
    const snap = parse(await s.read("metadata/snapshot.json")).signed as {
      version: number;
      meta: unknown;
    };
    const oldTargets = await s.read("metadata/1.targets.json");
    snap.version += 1;
    snap.meta = { "targets.json": { version: 1 } };
    const snapBytes = await forge(s.dir, "snapshot", snap);
    const ts = parse(await s.read("metadata/timestamp.json")).signed as {
      version: number;
      meta: unknown;
    };
    ts.version += 1;
    ts.meta = { "snapshot.json": { version: snap.version } };
    const tsBytes = await forge(s.dir, "timestamp", ts);
    s.override = (p) =>
      p === "/metadata/timestamp.json"
        ? bytesResponse(tsBytes)
        : p === `/metadata/${snap.version}.snapshot.json`
        ? bytesResponse(snapBytes)
        : p === "/metadata/1.targets.json"
        ? bytesResponse(oldTargets)
        : undefined;
    await assertRejects(
      () => client.refresh(),
      BadVersionError,
      "snapshot lists targets.json version 1, older than trusted 2",
    );
  } finally {
    await s.close();
  }
});

Deno.test("attack: mix-and-match (targets metadata from another version) is refused", async () => {
  const s = await withRelease();
  try {
    const older = await s.read("metadata/1.targets.json");
    s.override = (p) => (p === "/metadata/2.targets.json" ? bytesResponse(older) : undefined);
    const client = await s.client();
    await assertRejects(() => client.refresh(), LengthOrHashMismatchError, "targets.json");
  } finally {
    await s.close();
  }
});

Deno.test("attack: endless data for metadata and targets is cut at the allowed length", async () => {
  const s = await withRelease();
  try {
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    let sent = 0;
    s.override = (p) => {
      if (p !== "/metadata/timestamp.json") return undefined;
      return bytesResponse(
        new ReadableStream({
          pull(ctrl) {
            sent += chunk.length;
            ctrl.enqueue(chunk);
          },
        }),
      );
    };
    const client = await s.client();
    await assertRejects(() => client.refresh(), DownloadLengthError, "more than 16384 bytes");
    // The stream stopped: only what socket buffers took was ever produced.
    assert(sent < 64 * 1024 * 1024, `server sent ${sent} bytes`);

    s.override = () => undefined;
    await client.refresh();
    const info = (await client.getTargetInfo(RELEASE))!;
    const url = new URL(client.targetUrl(info)).pathname;
    s.override = (p) =>
      p === url
        ? bytesResponse(new ReadableStream({ pull: (ctrl) => ctrl.enqueue(chunk) }))
        : undefined;
    await assertRejects(
      () => client.downloadTarget(info),
      DownloadLengthError,
      "more than 50000 bytes",
    );
  } finally {
    await s.close();
  }
});

Deno.test("attack: slow server is abandoned (idle and total timeouts)", async () => {
  const s = await withRelease();
  try {
    s.override = (
      p,
    ) => (p === "/metadata/timestamp.json" ? drip(new Uint8Array([0x20]), 1000) : undefined);
    const idle = await s.client({ http: { idleTimeoutMs: 200 } });
    await assertRejects(() => idle.refresh(), DownloadTimeoutError, "no data for 200 ms");
    // A server trickling often enough to beat the idle timeout still hits the total limit ...
    s.override = (
      p,
    ) => (p === "/metadata/timestamp.json" ? drip(new Uint8Array([0x20]), 20) : undefined);
    const total = await s.client({ http: { idleTimeoutMs: 5000, metadataTimeoutMs: 400 } });
    await assertRejects(() => total.refresh(), DownloadTimeoutError, "not complete after 400 ms");
    // ... and the low-speed check catches it without a total limit (large targets have none).
    const slow = await s.client({
      http: { idleTimeoutMs: 5000, lowSpeedBytesPerSecond: 1000, lowSpeedWindowMs: 300 },
    });
    await assertRejects(
      () => slow.refresh(),
      DownloadTimeoutError,
      "below 1000 bytes/s for 300 ms",
    );
  } finally {
    await s.close();
  }
});

Deno.test("a Fetcher substitute gets every download with its length limit", async () => {
  const s = await withRelease();
  try {
    const calls: [string, number][] = [];
    const http = new HttpFetcher();
    const metadataDir = await s.tempDir();
    await TufClient.init(metadataDir, await s.read("metadata/1.root.json"));
    const client = new TufClient({
      metadataDir,
      metadataBaseUrl: `${s.url}metadata`,
      targetBaseUrl: `${s.url}targets`,
      fetcher: {
        fetchBytes: (url, max) => {
          calls.push([new URL(url).pathname, max]);
          return http.fetchBytes(url, max);
        },
        fetchToFile: (url, path, max) => {
          calls.push([new URL(url).pathname, max]);
          return http.fetchToFile(url, path, max);
        },
      },
    });
    const info = (await client.getTargetInfo(RELEASE))!;
    await client.downloadTarget(info, join(metadataDir, "release.bin"));
    const snapLen = (await s.read("metadata/2.snapshot.json")).length;
    const targetsLen = (await s.read("metadata/2.targets.json")).length;
    assertEquals(calls, [
      ["/metadata/2.root.json", 512000],
      ["/metadata/timestamp.json", 16384],
      ["/metadata/2.snapshot.json", snapLen],
      ["/metadata/2.targets.json", targetsLen],
      [new URL(client.targetUrl(info)).pathname, 50_000],
    ]);
  } finally {
    await s.close();
  }
});
