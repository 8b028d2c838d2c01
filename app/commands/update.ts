/**
 * `edged update`: drive updates on a device (MISSION.md "Command line").
 *
 *     edged update status [--json]      state, versions, slots, progress, last error
 *     edged update check                look for a newer release now
 *     edged update apply [--no-wait]    check and install; edged restarts into it
 *     edged update rollback [--offline] back to the previous slot
 *     edged update boot                 boot-counter step for a unit's ExecStartPre
 *
 * The commands talk to the running edged over its API (`--url`, default
 * from `listen`; the token from `api_token` or the data directory).
 * `rollback --offline`, `boot` and `status` without a running edged work on
 * the data directory directly. Exit 0 on success, 1 when the operation
 * fails, 2 on usage errors, 3 when a release's bytes do not match the
 * signed metadata (`update_verification_failed`: not worth retrying).
 *
 * @module
 */
import { Command } from "commander";
import { join, resolve } from "node:path";
import {
  type Config,
  ConfigError,
  DataDirLockedError,
  LAUNCHER_LOCK,
  loadConfig,
  lockDataDir,
  VERSION,
} from "../../runtime/mod.ts";
import { createProgress, EXIT } from "../../lib/mod.ts";
import {
  prepareBoot,
  renderStatus,
  rolledBack,
  SlotStore,
  UpdateStateError,
  type UpdateStatus,
} from "../../ota/update/mod.ts";

interface CommonOptions {
  config?: string;
  dataDir?: string;
  url?: string;
  token?: string;
}

function common(cmd: Command): Command {
  return cmd
    .option("--config <file>", "TOML configuration file (also EDGED_CONFIG)")
    .option("--data-dir <dir>", "data directory (also EDGED_DATA_DIR)")
    .option("--url <url>", "API base URL of the running edged (default from listen)")
    .option("--token <token>", "API token (default: api_token, or DATA_DIR/api-token)");
}

async function config(o: CommonOptions): Promise<Config> {
  try {
    return await loadConfig({ config: o.config, dataDir: o.dataDir });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`edged update: ${err.message}`);
      Deno.exit(EXIT.USAGE);
    }
    throw err;
  }
}

async function api(
  o: CommonOptions,
  cfg: Config,
  method: string,
  path: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const base = o.url ?? `http://${cfg.listen.replace(/^0\.0\.0\.0:/, "127.0.0.1:")}`;
  let token = o.token ?? cfg.api_token;
  if (!token) {
    token = (await Deno.readTextFile(join(resolve(cfg.data_dir), "api-token"))).trim();
  }
  const url = `${base.replace(/\/$/, "")}/api/v1/update${path}`;
  let res: Response;
  try {
    res = await fetch(url, { method, headers: { authorization: `Bearer ${token}` } });
  } catch (err) {
    if (method === "GET") throw err;
    console.error(
      `edged update: cannot reach edged at ${base}: ${(err as Error).message} ` +
        `(is it running? 'rollback --offline' works without it)`,
    );
    Deno.exit(EXIT.FAILURE);
  }
  return { status: res.status, body: await res.json() };
}

function done(r: { status: number; body: Record<string, unknown> }): never {
  console.log(JSON.stringify(r.body, null, 2));
  if (r.status < 300) Deno.exit(EXIT.OK);
  const code = (r.body.error as { code?: string } | undefined)?.code;
  Deno.exit(code === "update_verification_failed" ? EXIT.VERIFICATION_FAILED : EXIT.FAILURE);
}

/** Builds the `update` command and its sub-commands. */
export function updateCommand(): Command {
  const update = new Command("update").description(
    "drive over-the-air updates on this device (status, check, apply, rollback)",
  );

  common(update.command("status"))
    .description("state, versions, slots, progress and last error")
    .option("--json", "print the JSON answer of GET /api/v1/update, for scripts")
    .action(async (o: CommonOptions & { json?: boolean }) => {
      const cfg = await config(o);
      try {
        const r = await api(o, cfg, "GET", "");
        if (o.json || r.status >= 300) done(r);
        console.log(renderStatus(r.body, true));
        Deno.exit(0);
      } catch (err) {
        if (!(err instanceof TypeError || err instanceof Deno.errors.NotFound)) throw err;
        // edged is not running: the durable state is still worth showing.
        const s = await new SlotStore(resolve(cfg.data_dir)).read();
        console.log(
          o.json ? JSON.stringify({ running: false, ...s }, null, 2) : renderStatus(s, false),
        );
      }
    });

  common(update.command("check"))
    .description("look for a newer release now")
    .action(async (o: CommonOptions) => done(await api(o, await config(o), "POST", "/check")));

  common(update.command("apply"))
    .description("check and install a newer release; edged restarts into it")
    .option("--no-wait", "answer at once; follow progress with 'edged update status'")
    .action(async (o: CommonOptions & { wait: boolean }) => {
      const cfg = await config(o);
      if (!o.wait) done(await api(o, cfg, "POST", "/apply"));
      // While the device works, show its download progress from GET /api/v1/update.
      const bar = createProgress("update", { unit: "bytes" });
      let finished = false;
      const result = api(o, cfg, "POST", "/apply?wait=1").finally(() => (finished = true));
      while (!finished) {
        await Promise.race([result, new Promise((r) => setTimeout(r, 500))]);
        if (finished) break;
        const s = await api(o, cfg, "GET", "").catch(() => null);
        const p = s?.body.progress as UpdateStatus["progress"] | undefined;
        if (p) bar.update(p.received, p.total, String(s?.body.phase ?? ""));
      }
      bar.done();
      done(await result);
    });

  /**
   * Holds the data directory's locks (runtime/lock.ts) while `fn` changes the
   * update state without a running edged: a running edged or launcher would
   * otherwise race it. Exits 2 naming the holder when one runs.
   */
  async function whileStopped<T>(
    command: string,
    dataDir: string,
    fn: () => Promise<T>,
  ): Promise<T> {
    const locks = [];
    try {
      locks.push(await lockDataDir(dataDir));
      locks.push(await lockDataDir(dataDir, { name: LAUNCHER_LOCK, holder: "an edged launcher" }));
    } catch (err) {
      locks.forEach((l) => l.release());
      if (!(err instanceof DataDirLockedError)) throw err;
      console.error(`edged update ${command}: ${err.message}`);
      Deno.exit(EXIT.USAGE);
    }
    try {
      return await fn();
    } finally {
      locks.forEach((l) => l.release());
    }
  }

  common(update.command("rollback"))
    .description("go back to the previous slot (edged restarts into it)")
    .option("--offline", "edged is not running: change the data directory directly")
    .action(async (o: CommonOptions & { offline?: boolean }) => {
      const cfg = await config(o);
      if (!o.offline) done(await api(o, cfg, "POST", "/rollback"));
      const store = new SlotStore(resolve(cfg.data_dir));
      try {
        const s = await whileStopped("rollback --offline", cfg.data_dir, async () => {
          const s = await store.update((st) =>
            rolledBack(st, "requested by operator (offline)", { keepFrom: !st.trial })
          );
          await store.linkCurrent(s);
          return s;
        });
        console.log(JSON.stringify({ rolled_back: s.last_rollback, active: s.active }, null, 2));
      } catch (err) {
        if (err instanceof UpdateStateError) {
          console.error(`edged update rollback: ${err.message}`);
          Deno.exit(EXIT.FAILURE);
        }
        throw err;
      }
    });

  common(update.command("boot"))
    .description(
      "count a start for the boot counter and point DATA_DIR/update/current at the slot " +
        "to start (ExecStartPre of a unit whose ExecStart is that link)",
    )
    .action(async (o: CommonOptions) => {
      const cfg = await config(o);
      const u = cfg.update;
      const d = await whileStopped(
        "boot",
        cfg.data_dir,
        () =>
          prepareBoot(new SlotStore(resolve(cfg.data_dir)), {
            maxBootAttempts: u.max_boot_attempts,
            factoryBinary: u.binary ?? (Deno.build.standalone ? Deno.execPath() : undefined),
            factoryVersion: VERSION,
          }),
      );
      console.log(JSON.stringify({
        slot: d.slot,
        binary: d.binary ?? null,
        trial: d.trial,
        rolled_back: d.rolledBack ?? null,
      }));
    });

  return update;
}
