/**
 * `deno task fresh-machine`: the README's two commands on a fresh Debian 12
 * machine, for real. From a minimal root (debootstrap minbase bookworm with
 * only nodejs, npm and git; cached between runs), a clone of this repository
 * at a commit, then:
 *
 * 1. as an ordinary user without sudo, `npx --yes deno@2.9.5 task dev`
 *    answers `/readyz` 200 and takes a reading (202);
 * 2. the same user's `npx --yes deno@2.9.5 task test` stops before any test
 *    with the one-line install command (exit 1);
 * 3. as root, `npx --yes deno@2.9.5 task test` installs the Debian packages
 *    itself and the suite passes.
 *
 * Nothing may be left running in the root afterwards. Needs root on the host
 * (debootstrap, chroot, mount); it installs debootstrap first where it is
 * missing (`debian-packages.txt` beside this file). Long: not part of
 * `deno task test`.
 *
 * @module
 */
import { stripVTControlCharacters } from "node:util";
import { Command, parseCli } from "../_cli.ts";
import { provision, ProvisionError } from "../provision/mod.ts";
import {
  buildBase,
  inRoot,
  killProcessesIn,
  mountSystem,
  removeRootDir,
  ROOT_ENV,
  sh,
  unmountAll,
  unpackBase,
} from "./root.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const DENO = "npx --yes deno@2.9.5";
const USER = "newcomer";

/**
 * This network reaches npm through a TLS proxy whose CA is among the host's
 * extra certificates: the base root trusts it system-wide, and Deno (which
 * trusts its own Mozilla list by default) is told to trust the system store
 * too. On a machine with a direct connection this changes nothing.
 */
const NETWORK_ENV = { DENO_TLS_CA_STORE: "mozilla,system" };

/** One phase's outcome. */
interface Phase {
  name: string;
  seconds: number;
  ok: boolean;
  detail: string;
}

/** Options of {@linkcode freshMachine}. */
export interface FreshOptions {
  ref: string;
  cacheDir: string;
  mirror: string;
  rebuildBase: boolean;
  timeoutMinutes: number;
  /** Also stream the root test run's output here. */
  echo: boolean;
  log: (line: string) => void;
}

function fmtSeconds(s: number): string {
  return s < 90 ? `${s.toFixed(0)} s` : `${Math.floor(s / 60)} min ${(s % 60).toFixed(0)} s`;
}

/** A free TCP port on 127.0.0.1 (the root shares the host's network). */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Spawns `script` inside `root` in its own session (so the whole tree can be killed). */
function spawnInRoot(
  root: string,
  script: string,
  o: {
    user?: { uid: number; gid: number };
    env: Record<string, string>;
    logFile: string;
    echo?: boolean;
  },
): { child: Deno.ChildProcess; done: Promise<number> } {
  const userspec = o.user ? [`--userspec=${o.user.uid}:${o.user.gid}`] : [];
  // Host programs by absolute path: PATH here is the one of the user inside the root.
  const child = new Deno.Command("/usr/bin/setsid", {
    args: ["/usr/sbin/chroot", ...userspec, root, "/bin/sh", "-c", script],
    clearEnv: true,
    env: o.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const file = Deno.openSync(o.logFile, { append: true, create: true });
  const w = file.writable.getWriter();
  const pump = async (r: ReadableStream<Uint8Array>, echo: boolean) => {
    for await (const chunk of r) {
      await w.write(chunk);
      if (echo) await Deno.stdout.write(chunk);
    }
  };
  const echo = o.echo ?? false;
  const pumps = Promise.all([pump(child.stdout, echo), pump(child.stderr, echo)]);
  sessions.add(child);
  const done = (async () => {
    const status = await child.status;
    sessions.delete(child);
    await pumps.catch(() => {});
    await w.close().catch(() => {});
    return status.code;
  })();
  return { child, done };
}

/** Sessions running now: a signal to this process kills them, then the root is torn down. */
const sessions = new Set<Deno.ChildProcess>();

/** Kills a session started by {@linkcode spawnInRoot}. */
function killSession(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    Deno.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Waits for `done`, killing the session after `ms`; resolves with the exit code or null on timeout. */
async function within(
  run: { child: Deno.ChildProcess; done: Promise<number> },
  ms: number,
): Promise<number | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), ms));
  const code = await Promise.race([run.done, timeout]);
  clearTimeout(timer);
  if (code === null) {
    killSession(run.child, "SIGKILL");
    await run.done;
  }
  return code;
}

/** Resolves the commit `ref` names in this repository. */
async function resolveCommit(ref: string): Promise<string> {
  return (await sh("git", ["-C", REPO, "rev-parse", "--verify", `${ref}^{commit}`])).trim();
}

/** The phases in order, and whether every one ran and passed. */
export interface FreshResult {
  phases: Phase[];
  passed: boolean;
}

/** Runs the whole check. */
export async function freshMachine(o: FreshOptions): Promise<FreshResult> {
  const phases: Phase[] = [];
  const phase = async (name: string, fn: () => Promise<string>): Promise<boolean> => {
    const t0 = performance.now();
    let ok = true, detail: string;
    try {
      detail = await fn();
    } catch (err) {
      ok = false;
      detail = err instanceof Error ? err.message : String(err);
    }
    const p = { name, seconds: (performance.now() - t0) / 1000, ok, detail };
    phases.push(p);
    o.log(`${ok ? "ok  " : "FAIL"} ${name} (${fmtSeconds(p.seconds)}): ${detail}`);
    return ok;
  };

  await Deno.mkdir(o.cacheDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const logDir = `${o.cacheDir}/logs/${stamp}`;
  await Deno.mkdir(logDir, { recursive: true });
  o.log(`logs in ${logDir}`);
  const commit = await resolveCommit(o.ref);
  const dirty = (await sh("git", ["-C", REPO, "status", "--porcelain"])).trim();
  if (dirty) o.log(`note: uncommitted changes are not part of the run (commit ${commit})`);

  const tarball = `${o.cacheDir}/bookworm-minbase-node-npm-git.tar`;
  const haveBase = await Deno.stat(tarball).then(() => true, () => false);
  if (
    !await phase("base root", async () => {
      if (haveBase && !o.rebuildBase) return `cached ${tarball}`;
      await buildBase({ tarball, mirror: o.mirror, log: o.log, logFile: `${logDir}/base.log` });
      return `built ${tarball}`;
    })
  ) return { phases, passed: false };

  const { work, root } = await unpackBase(tarball);
  const timeoutMs = o.timeoutMinutes * 60_000;
  let clean = false;
  try {
    await mountSystem(root);
    let user = { uid: 0, gid: 0 };
    const cloned = await phase("clone", async () => {
      await sh("git", ["clone", "--quiet", "--bare", REPO, `${root}/srv/edged.git`]);
      // Each user clones a repository it owns (git refuses others' as "dubious ownership").
      await inRoot(
        root,
        `useradd --create-home --shell /bin/bash ${USER} && ` +
          `cp -r /srv/edged.git /home/${USER}/edged.git && ` +
          `chown -R ${USER}:${USER} /home/${USER}/edged.git && ` +
          `cd /root && git clone -q /srv/edged.git edged && cd edged && git checkout -q ${commit} && ` +
          `su ${USER} -c 'cd && git clone -q ~/edged.git edged && cd edged && ` +
          `git checkout -q ${commit}'`,
        `${logDir}/clone.log`,
      );
      const line = (await Deno.readTextFile(`${root}/etc/passwd`)).split("\n")
        .find((l) => l.startsWith(`${USER}:`))!.split(":");
      user = { uid: Number(line[2]), gid: Number(line[3]) };
      return `${commit.slice(0, 12)} into /root/edged and /home/${USER}/edged`;
    });
    if (!cloned) return { phases, passed: false };
    const userEnv = {
      ...ROOT_ENV,
      ...NETWORK_ENV,
      HOME: `/home/${USER}`,
      USER,
      LOGNAME: USER,
      PATH: "/usr/local/bin:/usr/bin:/bin",
    };

    await phase(`task dev as ${USER}: /readyz 200, a reading 202`, async () => {
      const port = freePort();
      const run = spawnInRoot(root, `cd ~/edged && ${DENO} task dev`, {
        user,
        env: { ...userEnv, EDGED_LISTEN: `127.0.0.1:${port}` },
        logFile: `${logDir}/dev.log`,
      });
      try {
        const deadline = Date.now() + Math.min(timeoutMs, 15 * 60_000);
        let ready = 0;
        while (Date.now() < deadline) {
          const exited = await Promise.race([
            run.done,
            new Promise<null>((r) => setTimeout(() => r(null), 500)),
          ]);
          if (exited !== null) throw new Error(`task dev exited with ${exited} (see dev.log)`);
          ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(async (r) => {
            await r.body?.cancel();
            return r.status;
          }, () => 0);
          if (ready === 200) break;
        }
        if (ready !== 200) throw new Error(`/readyz never answered 200 (last ${ready})`);
        const token = (await Deno.readTextFile(`${root}/home/${USER}/edged/data/api-token`)).trim();
        const r = await fetch(`http://127.0.0.1:${port}/api/v1/data`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ device_id: "pump-7", metric: "temperature", value: 71.5 }),
        });
        const body = await r.text();
        if (r.status !== 202) throw new Error(`POST /api/v1/data answered ${r.status} ${body}`);
        return `127.0.0.1:${port} ready, ingest ${r.status} ${body}`;
      } finally {
        killSession(run.child, "SIGTERM");
        if (await within(run, 20_000) === null) o.log("task dev did not stop on SIGTERM: killed");
      }
    });

    await phase(`task test as ${USER} (no root, no sudo): stops with the command`, async () => {
      const run = spawnInRoot(root, `cd ~/edged && ${DENO} task test`, {
        user,
        env: userEnv,
        logFile: `${logDir}/test-user.log`,
      });
      const code = await within(run, 10 * 60_000);
      const out = await Deno.readTextFile(`${logDir}/test-user.log`);
      const command = out.split("\n").find((l) => l.startsWith("  su -c 'apt-get update && "));
      if (code !== 1 || !command || /running \d+ tests? from/.test(out)) {
        throw new Error(`expected exit 1, the command and no test run; got exit ${code}`);
      }
      return `exit 1, no test ran: ${command.trim().slice(0, 80)}...`;
    });

    await phase("task test as root: provisions, then the suite", async () => {
      const run = spawnInRoot(root, `cd /root/edged && ${DENO} task test`, {
        env: { ...ROOT_ENV, ...NETWORK_ENV },
        logFile: `${logDir}/test-root.log`,
        echo: o.echo,
      });
      const code = await within(run, timeoutMs);
      const out = stripVTControlCharacters(await Deno.readTextFile(`${logDir}/test-root.log`));
      const summary = out.split("\n").filter((l) => /\d+ passed.*\d+ failed/.test(l)).pop();
      const installed = out.split("\n").find((l) => l.startsWith("provision: installed"));
      if (code === null) throw new Error(`timed out after ${o.timeoutMinutes} min`);
      const what = `${installed ?? "nothing installed"}; ${summary ?? "no summary"}`;
      if (code !== 0) {
        const failures = out.slice(out.lastIndexOf(" ERRORS ")).split("\n").slice(0, 60);
        throw new Error(`exit ${code}: ${what}\n${failures.join("\n")}`);
      }
      return what;
    });

    await phase("nothing left running in the root", async () => {
      const left = await killProcessesIn(root);
      if (left.length > 0) throw new Error(`killed ${left.length}:\n  ${left.join("\n  ")}`);
      clean = true;
      return "none";
    });
  } finally {
    await killProcessesIn(root);
    await unmountAll(root);
    await removeRootDir(work);
  }
  return { phases, passed: clean && phases.every((p) => p.ok) };
}

async function main(args: string[]): Promise<number> {
  const cache = `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/edged`;
  const program = new Command("fresh-machine")
    .description(
      "Run the README's two commands in a minimal Debian 12 root with only Node.js, npm and " +
        "git: task dev answers /readyz; task test, as a user without sudo, stops with the " +
        "install command; as root it provisions and passes. Needs root, chroot and mount; " +
        "installs debootstrap where it is missing. Long (the whole suite): not part of deno task test.",
    )
    .option("--ref <commit>", "the commit to clone (uncommitted changes are not included)", "HEAD")
    .option(
      "--cache <dir>",
      "where the base root tarball and the logs are kept",
      `${cache}/fresh-machine`,
    )
    .option("--mirror <url>", "Debian mirror for debootstrap", "http://deb.debian.org/debian")
    .option("--rebuild-base", "build the base root again even if it is cached")
    .option("--timeout <minutes>", "limit for each README command", "45")
    .option("--echo", "stream the suite's output (it is always in the log)");
  const stop = parseCli(program, args);
  if (stop !== null) return stop;
  const opts = program.opts();
  const timeoutMinutes = Number(opts.timeout);
  if (!(timeoutMinutes > 0)) {
    console.error("fresh-machine: --timeout must be a positive number of minutes");
    return 2;
  }
  if (Deno.uid() !== 0) {
    console.error("fresh-machine: needs root (debootstrap, chroot and mount)");
    return 1;
  }
  try {
    await provision({
      list: new URL("./debian-packages.txt", import.meta.url).pathname,
      neededBy: "deno task fresh-machine",
    });
  } catch (err) {
    if (!(err instanceof ProvisionError)) throw err;
    console.error(`fresh-machine: ${err.message}`);
    return 1;
  }
  // Ctrl-C or a kill: stop what runs in the root, then unmount and remove it as usual.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      console.error(`fresh-machine: ${signal}, stopping and cleaning up`);
      for (const child of sessions) killSession(child, "SIGKILL");
    });
  }
  const t0 = performance.now();
  const { phases, passed } = await freshMachine({
    ref: opts.ref,
    cacheDir: opts.cache,
    mirror: opts.mirror,
    rebuildBase: opts.rebuildBase ?? false,
    timeoutMinutes,
    echo: opts.echo ?? false,
    log: (l) => console.log(`fresh-machine: ${l}`),
  });
  console.log(
    `fresh-machine: ${passed ? "PASSED" : "FAILED"} in ${
      fmtSeconds((performance.now() - t0) / 1000)
    } (${phases.map((p) => `${p.name.split(":")[0]} ${fmtSeconds(p.seconds)}`).join(", ")})`,
  );
  return passed ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
