// deno-lint-ignore-file no-explicit-any
/**
 * Crash loop `update`: a device under `edged run --supervise` applies
 * releases from a local TUF repository (full downloads and BSDIFF40 deltas,
 * rate-limited so a download takes a couple of seconds) and loses power
 * (SIGKILL of the launcher and edged together) at a random moment: during
 * the download, the patch, the switch or the first boot. Before that, each
 * trial has the server refuse the download (404, or the bytes with one byte
 * changed: a digest mismatch), and loses power after the refusal. After each
 * power loss, on disk and after the restart:
 *
 * - `update/state.json` parses, and every slot it names holds exactly the
 *   bytes (SHA-256) it records, which are those of a release published in the
 *   repository: the running binary is always a verified release;
 * - a rollback target (the previous slot, holding its recorded bytes) exists
 *   whenever one existed before the attempt, refused or interrupted;
 * - a refused download fails with its own error (`update_download_failed` for the
 *   404, `update_verification_failed` for the digest) and changes nothing,
 *   unless an earlier power loss had left the release staged and verified
 *   (then it installs without a download, and that is counted);
 * - the device comes back and reports a published version;
 * - a download that had durable bytes resumes: the next full download fetches
 *   at most the rest (plus one sync interval);
 * - at the end the device converges on the newest release, confirmed.
 *
 * Releases are stand-ins (a `/bin/sh` header that execs `deno run main.ts`
 * plus a 2 MiB payload), because `deno compile` cannot produce runnable
 * binaries here; slots, switch and launcher treat them as binaries. They,
 * the repository and the device process are the update tests' own
 * (tests/ota/_update_helpers.ts); the device runs under `setsid` here, so a
 * power loss kills its whole process group.
 *
 * @module
 */
import { sha256Hex } from "../../lib/mod.ts";
import { join } from "node:path";
import {
  Device,
  freePort,
  publishRelease,
  repoCli,
  rollbackTarget,
} from "../../tests/ota/_update_helpers.ts";
import { serveRepo } from "../../tests/ota/_repo_server.ts";
import { Rng } from "../fuzz/_prng.ts";
import { type CrashOptions, type CrashReport, sleep } from "./_common.ts";

/** Payload of a release: a 2 MiB full download takes about 4 s at {@linkcode RATE}. */
const RELEASE_BYTES = 2 << 20;
/** Download rate: a window wide enough to hit. */
const RATE = 512 * 1024;

async function sha256File(path: string): Promise<string> {
  return await sha256Hex(await Deno.readFile(path));
}

/** Largest durable length recorded by partial downloads. */
async function partialBytes(dataDir: string): Promise<number> {
  let max = 0;
  const dir = join(dataDir, "update", "downloads");
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.name.endsWith(".part.json")) continue;
      try {
        const r = JSON.parse(await Deno.readTextFile(join(dir, e.name)));
        max = Math.max(max, Number(r.durable) || 0);
      } catch { /* a torn record is the downloader's to handle */ }
    }
  } catch { /* no downloads yet */ }
  return max;
}

/**
 * Checks state.json and the slots against the published releases; returns
 * problems. Counts power losses between a switch and its rename in `stats`.
 */
async function checkDisk(
  dataDir: string,
  published: Map<string, string>,
  stats: Record<string, number>,
): Promise<string[]> {
  const problems: string[] = [];
  const statePath = join(dataDir, "update", "state.json");
  let state: any;
  try {
    state = JSON.parse(await Deno.readTextFile(statePath));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return problems; // before the first start
    return [`state.json unreadable: ${(err as Error).message}`];
  }
  for (const slot of [state.active, state.previous]) {
    if (slot === null || slot === undefined) continue;
    const info = state.slots?.[slot];
    if (!info) {
      problems.push(`state names slot ${slot} but records nothing for it`);
      continue;
    }
    const file = join(dataDir, "update", "slots", slot, "edged");
    let sha: string;
    try {
      sha = await sha256File(file);
    } catch (err) {
      problems.push(`slot ${slot} (${info.version}): ${(err as Error).message}`);
      continue;
    }
    if (sha !== info.sha256) {
      // Power lost between the switch and the rename onto the slot: the boot
      // step renames the staged release (verified, with this digest) in.
      const staged = join(dataDir, "update", "downloads", `${info.sha256}-edged`);
      if (slot === state.active && (await sha256File(staged).catch(() => "")) === info.sha256) {
        stats.killed_between_switch_and_rename = (stats.killed_between_switch_and_rename ?? 0) + 1;
        sha = info.sha256;
      } else {
        problems.push(
          `slot ${slot} holds ${sha.slice(0, 12)}, state.json says ${info.sha256.slice(0, 12)}`,
        );
      }
    }
    if (published.get(info.version) !== sha) {
      problems.push(
        `slot ${slot} holds ${info.version} ${sha.slice(0, 12)}, not a published release`,
      );
    }
  }
  return problems;
}

/** Runs the update crash loop. */
export async function updateCrash(opts: CrashOptions): Promise<CrashReport> {
  const rng = new Rng(opts.seed, 3);
  const report: CrashReport = {
    scenario: "update",
    trials: 0,
    violations: [],
    stats: {
      releases: 0,
      refused_404: 0,
      refused_digest: 0,
      refused_but_already_staged: 0,
      killed_with_partial_download: 0,
      resumed: 0,
      restarted_download: 0,
      rollback_target_kept: 0,
    },
    notes: [],
  };
  const dir = await Deno.makeTempDir({ prefix: "edged-crash-update-" });
  const repo = join(dir, "repo");
  const rel = (v: string) => join(dir, `edged-${v}`);
  const published = new Map<string, string>();
  let n = 1;
  const publish = async (full: boolean) => {
    const v = `${n}.0.0`;
    await publishRelease(repo, rel(v), v, {
      seed: n,
      size: RELEASE_BYTES,
      deltas: full ? 0 : undefined,
    });
    published.set(v, await sha256File(rel(v)));
    report.stats.releases++;
    n++;
    return v;
  };
  await repoCli("init", repo);
  let latest = await publish(true);
  const server = serveRepo(repo);
  const device = new Device(rel("1.0.0"), join(dir, "data"), freePort(), {
    EDGED_UPDATE_URL: server.url,
    EDGED_UPDATE_ROOT: join(repo, "metadata", "1.root.json"),
    EDGED_UPDATE_AUTO_APPLY: "false",
    EDGED_UPDATE_RATE_LIMIT_BYTES_PER_S: String(RATE),
    EDGED_UPDATE_BURST_BYTES: "65536",
    EDGED_UPDATE_BOOT_DEADLINE_S: "60",
    EDGED_UPDATE_MAX_BOOT_ATTEMPTS: "3",
    EDGED_DEVICE_ID: "crash-device",
    EDGED_LOG_LEVEL: "info",
  }, { setsid: true, logFile: join(dir, "data.log") });
  /** The oracle: a rollback target that existed before an attempt still exists, intact. */
  const keptTarget = async (
    trial: number,
    what: string,
    before: Awaited<ReturnType<typeof rollbackTarget>>,
  ) => {
    if (!before?.intact) return;
    // The boot step completes a rename a power loss interrupted after the switch.
    const after = await rollbackTarget(device.dataDir).catch(() => null);
    if (after?.intact) report.stats.rollback_target_kept++;
    else {
      report.violations.push(
        `trial ${trial}: after ${what} the rollback target ${before.version} (slot ` +
          `${before.slot}) is gone: ${JSON.stringify(after)}`,
      );
    }
  };
  const isPublished = (s: { current: { version: string; sha256: string | null } }) =>
    published.has(s.current.version) &&
    (s.current.sha256 === null || s.current.sha256 === published.get(s.current.version));
  /**
   * Waits until the device reports a published version. A factory build (no
   * slot installed yet) learns which release it is from an update check, and
   * its first periodic check comes 30 to 90 s after start (jittered, so a
   * fleet restarted together does not hit the server at once): waiting for
   * that one made the loop fail whenever the jitter and a slow start passed
   * 90 s. So while the device is idle and unidentified it is asked for a
   * check, every 2 s at most.
   */
  const waitPublished = (): Promise<any> => {
    let asked = 0;
    return device.waitStatus("a published version", isPublished, 90_000, async (s) => {
      if (s.phase !== "idle" || Date.now() - asked < 2000) return;
      asked = Date.now();
      await device.api("/api/v1/update/check", { method: "POST", timeoutMs: 30_000 })
        .catch(() => {});
    });
  };
  try {
    device.start();
    let status = await waitPublished();
    for (let trial = 1; trial <= opts.trials; trial++) {
      // A version on trial refuses a new apply until it is confirmed healthy,
      // or rolled back at the boot deadline (60 s here): never left hanging.
      try {
        status = await device.waitStatus(
          "a confirmed published version",
          (s) => isPublished(s) && s.trial === null,
          150_000,
        );
      } catch (err) {
        report.violations.push(
          `trial ${trial}: a trial was neither confirmed nor rolled back within 150 s: ` +
            (err as Error).message.slice(0, 600),
        );
        break;
      }
      if (status.current.version === latest) latest = await publish(rng.chance(0.6));
      const ran = status.current.version;

      // A refused download, then a power loss: nothing changes.
      const refusal = rng.pick(["404", "digest"] as const);
      let before = await rollbackTarget(device.dataDir);
      server.mode.targetStatus = refusal === "404" ? 404 : null;
      server.mode.corruptTargets = refusal === "digest";
      const refused = await device.api("/api/v1/update/apply?wait=1", {
        method: "POST",
        timeoutMs: 120_000,
      }).catch((e) => ({ status: 0, body: { error: { code: String(e) } } }));
      server.mode.targetStatus = null;
      server.mode.corruptTargets = false;
      report.stats[`refused_${refusal}`]++;
      const want = refusal === "404" ? "update_download_failed" : "update_verification_failed";
      // An earlier power loss may have left this release staged and verified:
      // then nothing is downloaded, and installing it is right.
      const staged = refused.status === 200 && refused.body?.fetched === 0 &&
        /staged by an earlier attempt/.test(String(refused.body?.deltaFallback));
      if (staged) report.stats.refused_but_already_staged++;
      else if (refused.body?.error?.code !== want) {
        report.violations.push(
          `trial ${trial}: a ${refusal} refusal answered ${refused.status} ` +
            `${JSON.stringify(refused.body).slice(0, 300)}, expected ${want}`,
        );
      }
      await device.killAll();
      for (const p of await checkDisk(device.dataDir, published, report.stats)) {
        report.violations.push(`trial ${trial} (after a refused download): ${p}`);
      }
      await keptTarget(trial, "a refused download", before);
      device.start();
      try {
        status = await waitPublished();
      } catch (err) {
        report.violations.push(`trial ${trial}: after restart ${(err as Error).message}`);
        break;
      }
      if (!staged && status.current.version !== ran) {
        report.violations.push(
          `trial ${trial}: a refused download changed the version: ${ran} -> ` +
            status.current.version,
        );
      }

      // An apply interrupted by a power loss.
      if (staged) {
        try {
          status = await device.waitStatus(
            "a confirmed published version",
            (s) => isPublished(s) && s.trial === null,
            150_000,
          );
        } catch (err) {
          report.violations.push(`trial ${trial}: ${(err as Error).message.slice(0, 600)}`);
          break;
        }
        if (status.current.version === latest) latest = await publish(rng.chance(0.6));
      }
      before = await rollbackTarget(device.dataDir);
      const started = await device.api("/api/v1/update/apply", { method: "POST" });
      // The kill point: a random time, or a moment picked by what the device
      // reports (during the download, at the switch, during the first boot).
      const t0 = Date.now();
      const point = rng.pick(["time", "download", "switch", "first boot"] as const);
      if (point === "time") await sleep(rng.int(0, 9000));
      else {
        const until = Date.now() + 30_000;
        while (Date.now() < until) {
          const s = await device.api("/api/v1/update", { timeoutMs: 500 }).then((r) => r.body)
            .catch(() => null);
          if (point === "download" && s?.progress?.received > 0) break;
          if (point === "switch" && (s === null || s.phase === "installing")) break;
          if (point === "first boot" && s?.trial) break;
          await sleep(50);
        }
        await sleep(rng.int(0, point === "switch" ? 300 : 1500));
      }
      const at = Date.now() - t0;
      // The phase just before the kill; no answer means edged was restarting (switch, first boot).
      const phase = await device.api("/api/v1/update", { timeoutMs: 1000 }).then((r) =>
        String(r.body?.trial ? "first boot" : r.body?.phase)
      ).catch(() => "restarting");
      report.stats[`killed_${phase.replace(/\W+/g, "_")}`] =
        (report.stats[`killed_${phase.replace(/\W+/g, "_")}`] ?? 0) + 1;
      await device.killAll();
      const partial = await partialBytes(device.dataDir);
      for (const p of await checkDisk(device.dataDir, published, report.stats)) {
        report.violations.push(`trial ${trial} (power loss at ${at} ms, ${phase}): ${p}`);
      }
      await keptTarget(trial, `a power loss at ${at} ms (${phase})`, before);
      device.start();
      try {
        status = await waitPublished();
      } catch (err) {
        report.violations.push(`trial ${trial}: after restart ${(err as Error).message}`);
        break;
      }
      if (partial > 0) {
        report.stats.killed_with_partial_download++;
        // Finish this update now: a full download must fetch only the rest.
        const r = await device.api("/api/v1/update/apply?wait=1", {
          method: "POST",
          timeoutMs: 120_000,
        }).catch((e) => ({
          status: 0,
          body: { error: String(e) },
        }));
        if (r.status === 200 && r.body.method === "full" && typeof r.body.fetched === "number") {
          const total = (await Deno.stat(rel(r.body.version))).size;
          if (r.body.fetched > total - partial + 1024 * 1024) {
            report.stats.restarted_download++;
            report.violations.push(
              `trial ${trial}: download restarted: fetched ${r.body.fetched} of ${total} bytes ` +
                `with ${partial} durable before the power loss`,
            );
          } else report.stats.resumed++;
        }
        status = await device.waitStatus(
          "a confirmed published version",
          (s) => isPublished(s) && s.trial === null,
          90_000,
        );
      }
      report.trials++;
      opts.log?.(
        `update trial ${trial}: apply answered ${started.status}, power loss at ${at} ms ` +
          `(${phase}), ${partial} bytes partial; running ${status.current.version}`,
      );
    }
    // Convergence: the newest release installs and is confirmed.
    await device.waitStatus(
      "a confirmed published version",
      (s) => isPublished(s) && s.trial === null,
      90_000,
    ).catch(() => {});
    const fin = await device.api("/api/v1/update/apply?wait=1", {
      method: "POST",
      timeoutMs: 120_000,
    }).catch(() => null);
    if (!fin || (fin.status !== 200)) {
      report.violations.push(`final apply failed: ${JSON.stringify(fin?.body)}`);
    } else {
      await device.waitStatus(
        `${latest} confirmed`,
        (s) => s.current.version === latest && s.trial === null,
        90_000,
      )
        .catch((err) => report.violations.push(`did not converge on ${latest}: ${err.message}`));
    }
  } finally {
    await device.killAll().catch(() => {});
    await server.close();
    if (report.violations.length === 0) await Deno.remove(dir, { recursive: true }).catch(() => {});
    else report.notes.push(`data, repository and device log kept in ${dir}`);
  }
  return report;
}
