/**
 * Runs edged on aarch64 under user-mode emulation: the arm64 Deno from npm
 * (`@deno/linux-arm64-glibc`, the same version as the host's) under
 * `qemu-aarch64` with Debian's arm64 libc (`QEMU_LD_PREFIX`). This is how the
 * aarch64 build is exercised on an x86_64 machine; `deno task aarch64`
 * starts edged that way and checks `/healthz` and one ingest.
 *
 * @module
 */
import { Command, parseCli } from "./_cli.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** Where Debian's libc6-arm64-cross puts the arm64 loader and libraries. */
export const QEMU_LD_PREFIX = "/usr/aarch64-linux-gnu";

/** Thrown when emulation is not available, naming what is missing. */
export class EmulationUnavailable extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "EmulationUnavailable";
  }
}

function which(cmd: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
      .outputSync().code === 0;
  } catch {
    return false;
  }
}

/**
 * Returns the path of the arm64 `deno` of the running version, unpacking it
 * from the npm registry into `.bench-cache/` on first use.
 */
export async function arm64Deno(): Promise<string> {
  if (!which("qemu-aarch64")) {
    throw new EmulationUnavailable("qemu-aarch64 is not installed (Debian package qemu-user)");
  }
  try {
    await Deno.stat(`${QEMU_LD_PREFIX}/lib/ld-linux-aarch64.so.1`);
  } catch {
    throw new EmulationUnavailable(
      `no arm64 loader under ${QEMU_LD_PREFIX} (Debian packages libc6-arm64-cross, libgcc-s1-arm64-cross)`,
    );
  }
  const version = Deno.version.deno;
  const dir = `${ROOT}.bench-cache/deno-arm64-${version}`;
  const bin = `${dir}/package/deno`;
  try {
    await Deno.stat(bin);
    return bin;
  } catch { /* not unpacked yet */ }
  await Deno.mkdir(dir, { recursive: true });
  const pack = await new Deno.Command("npm", {
    args: ["pack", "--silent", `@deno/linux-arm64-glibc@${version}`],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (pack.code !== 0) {
    throw new EmulationUnavailable(
      `npm pack @deno/linux-arm64-glibc@${version} failed: ${
        new TextDecoder().decode(pack.stderr)
      }`,
    );
  }
  const tgz = new TextDecoder().decode(pack.stdout).trim().split("\n").pop()!;
  const untar = await new Deno.Command("tar", { args: ["xzf", tgz], cwd: dir }).output();
  if (untar.code !== 0) throw new EmulationUnavailable(`could not unpack ${tgz}`);
  await Deno.chmod(bin, 0o755);
  return bin;
}

/** A `Deno.Command` running the arm64 deno with `args` under qemu. */
export async function arm64Command(
  args: string[],
  options: Omit<Deno.CommandOptions, "args"> = {},
): Promise<Deno.Command> {
  const deno = await arm64Deno();
  return new Deno.Command("qemu-aarch64", {
    ...options,
    args: [deno, ...args],
    env: { ...options.env, QEMU_LD_PREFIX },
  });
}

/** What {@linkcode smokeTest} saw. */
export interface SmokeResult {
  arch: string;
  healthz: number;
  ingest: number;
  /** Topics the preloaded C threshold-alert module published for a reading over its threshold. */
  moduleAlerts: string[];
  startSeconds: number;
}

/**
 * Starts edged with the arm64 deno under qemu on a free port, waits for
 * readiness (emulation is slow: up to `timeoutS`), checks `/healthz`, one
 * ingest and one message through the preloaded C threshold-alert module (so
 * the sandbox Workers, wasm and the shared-buffer host calls run on arm64),
 * and stops it with SIGTERM.
 */
export async function smokeTest(timeoutS = 180): Promise<SmokeResult> {
  const { sourceRunFlags } = await import("./_flags.ts");
  const dataDir = await Deno.makeTempDir({ prefix: "edged-aarch64-" });
  const token = "aarch64-smoke-token-0123";
  const t0 = performance.now();
  const child = (await arm64Command(
    [
      "run",
      ...sourceRunFlags(),
      `${ROOT}main.ts`,
      "run",
      "--data-dir",
      dataDir,
      "--listen",
      "127.0.0.1:0",
    ],
    {
      env: {
        EDGED_API_TOKEN: token,
        EDGED_LOG_FORMAT: "json",
        EDGED_MODULES_PRELOAD: `${ROOT}examples/modules/threshold-alert-c`,
      },
      stdout: "piped",
      stderr: "inherit",
      stdin: "null",
    },
  )).spawn();
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`not listening after ${timeoutS} s`)),
        timeoutS * 1000,
      );
      (async () => {
        let buf = "";
        for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
          buf += chunk;
          const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(buf);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        }
        reject(new Error(`edged exited before listening:\n${buf}`));
      })();
    });
    let ready = false;
    while (!ready && performance.now() - t0 < timeoutS * 1000) {
      const r = await fetch(`${url}/readyz`);
      await r.body?.cancel();
      ready = r.status === 200;
      if (!ready) await new Promise((r) => setTimeout(r, 200));
    }
    const startSeconds = (performance.now() - t0) / 1000;
    const h = await fetch(`${url}/healthz`);
    await h.body?.cancel();
    const res = await fetch(`${url}/api/v1/data`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ device_id: "arm", value: 1 }),
    });
    await res.body?.cancel();
    const msg = await fetch(`${url}/api/v1/modules/threshold-alert/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({
        topic: "sensors/arm/temperature",
        payload: { device_id: "arm", metric: "temperature", value: 99, timestamp: Date.now() },
      }),
    });
    const answer = await msg.json() as { published?: { topic: string }[] };
    const arch = await (await arm64Command(["eval", "console.log(Deno.build.arch)"], {
      stdout: "piped",
    })).output();
    return {
      arch: new TextDecoder().decode(arch.stdout).trim(),
      healthz: h.status,
      ingest: res.status,
      moduleAlerts: (answer.published ?? []).map((p) => p.topic),
      startSeconds,
    };
  } finally {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
  }
}

if (import.meta.main) {
  const program = new Command("aarch64")
    .description(
      "Run edged with the arm64 Deno (npm @deno/linux-arm64-glibc) under qemu-aarch64 and " +
        "check /healthz, an ingest and a module. Needs qemu-user and libc6-arm64-cross.",
    );
  const stop = parseCli(program, Deno.args);
  if (stop !== null) Deno.exit(stop);
  const r = await smokeTest();
  console.log(
    `aarch64 (qemu): arch=${r.arch} healthz=${r.healthz} ingest=${r.ingest} module alerts=${
      r.moduleAlerts.join(",")
    } ready after ${r.startSeconds.toFixed(1)} s`,
  );
  const ok = r.arch === "aarch64" && r.healthz === 200 && r.ingest === 202 &&
    r.moduleAlerts.length === 1;
  Deno.exit(ok ? 0 : 1);
}
