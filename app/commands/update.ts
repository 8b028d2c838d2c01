/**
 * `edged update`: drive updates on a device (README.md, "Command line").
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
import { resolve } from "node:path";
import { type Config, VERSION } from "../../runtime/mod.ts";
import { createProgress, EXIT } from "../../lib/mod.ts";
import {
  prepareBoot,
  renderStatus,
  rolledBack,
  SlotStore,
  UpdateStateError,
  type UpdateStatus,
} from "../../ota/update/mod.ts";
import {
  callLocalApi,
  commandConfig,
  type LocalApiOptions,
  localApiOptions as common,
  unreachable,
  whileStopped,
} from "./_local_api.ts";

type CommonOptions = LocalApiOptions;
type Answer = { status: number; body: Record<string, unknown> };

const config = (o: CommonOptions) => commandConfig("edged update", o);

/** Calls `/api/v1/update{path}`; only a GET rejects when edged does not answer. */
async function api(o: CommonOptions, cfg: Config, method: string, path: string): Promise<Answer> {
  try {
    return await callLocalApi(o, cfg, method, `/update${path}`) as Answer;
  } catch (err) {
    if (method === "GET" || !(err instanceof TypeError)) throw err;
    unreachable(
      "edged update",
      o,
      cfg,
      err,
      "is it running? 'rollback --offline' works without it",
    );
  }
}

function done(r: Answer): never {
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

  common(update.command("rollback"))
    .description("go back to the previous slot (edged restarts into it)")
    .option("--offline", "edged is not running: change the data directory directly")
    .action(async (o: CommonOptions & { offline?: boolean }) => {
      const cfg = await config(o);
      if (!o.offline) done(await api(o, cfg, "POST", "/rollback"));
      const store = new SlotStore(resolve(cfg.data_dir));
      try {
        const s = await whileStopped("edged update rollback --offline", cfg.data_dir, async () => {
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
        "edged update boot",
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
