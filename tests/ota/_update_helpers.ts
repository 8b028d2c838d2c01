// deno-lint-ignore-file no-explicit-any
/**
 * Helpers of the update tests (and of the `update` crash loop,
 * scripts/crash/update.ts): stand-in release executables, a repository built
 * with `edged repo`, and a device process under `edged run --supervise`.
 *
 * Why stand-ins: `deno compile` cannot produce runnable binaries on this
 * machine (no denort), so a "release" here is a real executable we can make:
 * a `/bin/sh` header that execs `deno run main.ts "$@"`, followed by a 512 KiB
 * payload that differs a little between versions (so deltas are small and
 * full downloads are not). The payload is never read: `sh` has exec'd by
 * then. Slots, the atomic switch, the boot counter and the launcher treat
 * these files exactly as they treat compiled binaries: they are copied,
 * patched, hashed, made executable and exec'd the same way.
 *
 * @module
 */
import { join } from "node:path";
import { addRelease, Repository } from "../../ota/mod.ts";
import { runCli } from "../_helpers/edged.ts";
export { freePort } from "../_helpers/mosquitto.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
export const TRIPLE = "x86_64-unknown-linux-gnu";
export const TOKEN = "test-token-0123456789abcdef";

/** Options of {@linkcode makeRelease}. */
export interface ReleaseOptions {
  /** Shell lines before the exec (e.g. variables that make this release unhealthy). */
  prelude?: string;
  /** Arguments appended after "$@". */
  extraArgs?: string;
  /** Payload variation. */
  seed: number;
  /** Payload size in bytes (a larger release takes longer to download). @default {524288} */
  size?: number;
}

/** Writes a stand-in release executable. */
export async function makeRelease(path: string, version: string, o: ReleaseOptions) {
  const header = `#!/bin/sh
# edged ${version}: stand-in for a compiled release (see tests/ota/_update_helpers.ts)
${o.prelude ?? ""}
exec ${Deno.execPath()} run --allow-all ${MAIN} "$@" ${o.extraArgs ?? ""}
`;
  const payload = new Uint8Array(o.size ?? 512 << 10);
  // xorshift32: the top byte of a linear congruential generator has enough
  // structure to make bsdiff's suffix sort 30 times slower.
  let x = 2463534242;
  for (let i = 0; i < payload.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    payload[i] = x;
  }
  for (let i = 0; i < 64; i++) payload[(i * 7919 * (o.seed + 1)) % payload.length] ^= o.seed;
  const head = new TextEncoder().encode(header);
  const data = new Uint8Array(head.length + payload.length);
  data.set(head);
  data.set(payload, head.length);
  await Deno.writeFile(path, data, { mode: 0o755 });
}

/** Runs `edged repo ...`; throws on a non-zero exit. */
export async function repoCli(...args: string[]): Promise<string> {
  const r = await runCli(["repo", ...args]);
  if (r.code !== 0) throw new Error(`edged repo ${args.join(" ")}: ${r.code}\n${r.stderr}`);
  return r.stdout;
}

/** Options of {@linkcode publishRelease}. */
export interface PublishOptions extends ReleaseOptions {
  /** `edged repo add --deltas N`: deltas from the N newest releases (0: full only). */
  deltas?: number;
  /** `edged repo add --rollout P`: offered to P % of devices. */
  rollout?: number;
}

/**
 * Writes a stand-in release to `path` and adds it to the repository as
 * `version` for {@linkcode TRIPLE}; resolves with `edged repo add`'s output.
 */
export async function publishRelease(
  repo: string,
  path: string,
  version: string,
  o: PublishOptions,
): Promise<string> {
  await makeRelease(path, version, o);
  const deltas = o.deltas === undefined ? [] : ["--deltas", String(o.deltas)];
  const rollout = o.rollout === undefined ? [] : ["--rollout", String(o.rollout)];
  return await repoCli(
    "add",
    repo,
    "--release",
    path,
    "--triple",
    TRIPLE,
    "--version",
    version,
    ...rollout,
    ...deltas,
  );
}

/** Waits until `fn` returns a truthy value. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false | null>,
  timeoutMs = 30000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** Options of {@linkcode Device}. */
export interface DeviceOptions {
  /**
   * Start the launcher under `setsid`, in its own session and process group,
   * so {@linkcode Device.killAll} kills every process of the device at once
   * (a power loss), even one the launcher spawns during the kill.
   * @default {false}
   */
  setsid?: boolean;
  /**
   * Append the device's stdout and stderr to this file (kept for a
   * post-mortem) instead of keeping stdout in `lines` and passing stderr on.
   */
  logFile?: string;
}

/** A device: the launcher (`<factory> run --supervise`) and the edged it starts. */
export class Device {
  readonly lines: string[] = [];
  child!: Deno.ChildProcess;
  readonly url: string;

  constructor(
    readonly factory: string,
    readonly dataDir: string,
    readonly port: number,
    readonly env: Record<string, string>,
    readonly options: DeviceOptions = {},
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  /** Starts the launcher. */
  start(): this {
    const args = [
      "run",
      "--supervise",
      "--data-dir",
      this.dataDir,
      "--listen",
      `127.0.0.1:${this.port}`,
    ];
    const { setsid, logFile } = this.options;
    this.child = new Deno.Command(setsid ? "setsid" : this.factory, {
      args: setsid ? [this.factory, ...args] : args,
      env: {
        EDGED_API_TOKEN: TOKEN,
        EDGED_LOG_FORMAT: "json",
        EDGED_UPDATE_BINARY: this.factory,
        ...this.env,
      },
      stdin: "null",
      stdout: "piped",
      stderr: logFile ? "piped" : "inherit",
    }).spawn();
    if (logFile) {
      const w = Deno.openSync(logFile, { append: true, create: true }).writable.getWriter();
      const pipe = async (r: ReadableStream<Uint8Array>) => {
        for await (const chunk of r) await w.write(chunk);
      };
      Promise.all([pipe(this.child.stdout), pipe(this.child.stderr)]).catch(() => {})
        .finally(() => w.close().catch(() => {}));
      return this;
    }
    (async () => {
      let buf = "";
      for await (const chunk of this.child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          this.lines.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      }
    })();
    return this;
  }
  /** Log messages so far. */
  messages(): string[] {
    return this.lines.map((l) => {
      try {
        return String(JSON.parse(l).message);
      } catch {
        return l;
      }
    });
  }

  /** Calls the API with the token (time limit: `timeoutMs`, 60 s with `wait=1`, else 5 s). */
  async api(
    path: string,
    init: RequestInit & { timeoutMs?: number } = {},
  ): Promise<{ status: number; body: any }> {
    const { timeoutMs, ...rest } = init;
    const res = await fetch(this.url + path, {
      signal: AbortSignal.timeout(timeoutMs ?? (path.includes("wait=1") ? 60000 : 5000)),
      ...rest,
      headers: { authorization: `Bearer ${TOKEN}`, ...init.headers },
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  /** GET /api/v1/update once the API answers. */
  async status(): Promise<any> {
    return (await waitFor("the update API", () => this.api("/api/v1/update"))).body;
  }

  /**
   * Waits until the update status satisfies `pred`, running `meanwhile` with
   * each status that does not; the error shows the last status seen.
   */
  async waitStatus(
    what: string,
    pred: (s: any) => boolean,
    timeoutMs = 40000,
    meanwhile?: (s: any) => Promise<void>,
  ): Promise<any> {
    let last: unknown = "no answer";
    try {
      return await waitFor(what, async () => {
        const r = await this.api("/api/v1/update");
        last = r.body;
        if (r.status !== 200) return undefined;
        if (pred(r.body)) return r.body;
        await meanwhile?.(r.body);
        return undefined;
      }, timeoutMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last)}`);
    }
  }

  /** The durable state file. */
  async state(): Promise<any> {
    return JSON.parse(await Deno.readTextFile(join(this.dataDir, "update", "state.json")));
  }

  /** Pid of the edged the launcher runs now. */
  async edgedPid(timeoutMs = 30000): Promise<number> {
    return await waitFor("a child of the launcher", async () => {
      const out = await new Deno.Command("pgrep", { args: ["-P", String(this.child.pid)] })
        .output();
      const pid = Number(new TextDecoder().decode(out.stdout).trim().split("\n")[0]);
      return pid > 0 ? pid : undefined;
    }, timeoutMs);
  }

  /** kill -9 of edged only (the launcher lives on). */
  async killEdged(): Promise<void> {
    Deno.kill(await this.edgedPid(), "SIGKILL");
  }

  /** kill -9 of the launcher and edged together (power loss). */
  async killAll(): Promise<void> {
    if (this.options.setsid) {
      // The whole process group at once; then anything that left it (none should).
      const below = await descendants(this.child.pid);
      try {
        Deno.kill(-this.child.pid, "SIGKILL");
      } catch { /* gone */ }
      await this.child.status;
      for (const pid of below) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      return;
    }
    const pid = await this.edgedPid(2000).catch(() => 0);
    this.child.kill("SIGKILL");
    if (pid) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    await this.child.status;
  }

  /** SIGTERM to the launcher (it stops edged first); resolves with its exit code. */
  async stop(): Promise<number> {
    try {
      this.child.kill("SIGTERM");
    } catch { /* gone */ }
    return (await this.child.status).code;
  }
}

/** Every process below `pid` (children first-level, then theirs). */
async function descendants(pid: number): Promise<number[]> {
  const out = await new Deno.Command("pgrep", { args: ["-P", String(pid)] }).output();
  const kids = new TextDecoder().decode(out.stdout).split("\n").map(Number).filter((n) => n > 0);
  const all = [...kids];
  for (const k of kids) all.push(...await descendants(k));
  return all;
}

/** Lower-case hex SHA-256 of a file. */
export async function sha256Of(path: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(path)));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Writes a data directory's update area as after a confirmed update from
 * `older` to `newer` (release files): slot a holds `older` (the rollback
 * target), slot b holds `newer` and is active.
 */
export async function installTwoSlots(
  dataDir: string,
  older: { file: string; version: string },
  newer: { file: string; version: string },
): Promise<void> {
  const root = join(dataDir, "update");
  const slots: Record<string, unknown> = {};
  for (const [slot, r] of [["a", older], ["b", newer]] as const) {
    await Deno.mkdir(join(root, "slots", slot), { recursive: true });
    await Deno.copyFile(r.file, join(root, "slots", slot, "edged"));
    await Deno.chmod(join(root, "slots", slot, "edged"), 0o755);
    slots[slot] = {
      version: r.version,
      sha256: await sha256Of(r.file),
      installed_at: new Date().toISOString(),
      source: "full",
    };
  }
  const state = { format: 1, active: "b", previous: "a", slots, trial: null, last_rollback: null };
  await Deno.writeTextFile(join(root, "state.json"), JSON.stringify(state, null, 2));
}

/**
 * The device's rollback target as `state.json` records it, and whether its
 * slot holds exactly the recorded bytes: the oracle of the tests and crash
 * loop of "a failed update never costs the device its way back". Null when
 * there is none.
 */
export async function rollbackTarget(
  dataDir: string,
): Promise<{ slot: string; version: string; sha256: string; intact: boolean } | null> {
  const root = join(dataDir, "update");
  const state = JSON.parse(await Deno.readTextFile(join(root, "state.json")));
  const slot = state.previous;
  if (!slot || !state.slots?.[slot]) return null;
  const { version, sha256 } = state.slots[slot];
  const intact = await sha256Of(join(root, "slots", slot, "edged")).then((s) => s === sha256)
    .catch(() => false);
  return { slot, version, sha256, intact };
}

/**
 * Publishes stand-in releases `versions` (seeds 1, 2, ...) of `size` bytes
 * into a new repository at `repo`, in this process (no CLI start per
 * release), each with a BSDIFF40 delta from the one before. Resolves with
 * the release files by version.
 */
export async function publishReleases(
  repo: string,
  dir: string,
  versions: string[],
  size = 512 << 10,
): Promise<Record<string, string>> {
  await Repository.init(repo);
  const files: Record<string, string> = {};
  for (const [i, v] of versions.entries()) {
    const file = files[v] = join(dir, `edged-${v}`);
    await makeRelease(file, v, { seed: i + 1, size });
    await addRelease(await Repository.open(repo), file, { triple: TRIPLE, version: v, deltas: 1 });
  }
  return files;
}
