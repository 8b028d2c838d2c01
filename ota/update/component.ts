/**
 * The updater as a runtime component: boot confirmation of a trial version,
 * periodic jittered checks, the `/api/v1/update` routes, metrics, and the
 * MQTT `update-check` and `module-deploy` commands.
 *
 * @module
 */
import type { Component, RuntimeContext } from "../../runtime/mod.ts";
import { updateApi } from "./api.ts";
import { ApplyNotAllowedError, DowngradeRefusedError, UpdateParamsError } from "./errors.ts";
import { compareVersions, jittered } from "./policy.ts";
import { type UpdatePhase, Updater } from "./updater.ts";
import { errorCode, EXIT, getLogger } from "../../lib/mod.ts";

const log = getLogger(["edged", "update"]);

const PHASES: UpdatePhase[] = [
  "idle",
  "checking",
  "downloading",
  "installing",
  "switching",
  "restarting",
  "trial",
  "failed",
];

/** What the updater needs from the MQTT component (structural, to keep folders apart). */
export interface MqttHooks {
  /** Adds the handler of `PREFIX/cmd/{name}`. */
  registerCommand(
    name: string,
    handler: (params: Record<string, unknown>) => unknown | Promise<unknown>,
  ): void;
  /** Sets where extra status fields come from. */
  setStatusProvider(provider: () => Record<string, unknown>): void;
  /** Publishes the retained status again. */
  refreshStatus(): void;
}

/** Options of {@linkcode updaterComponent} beyond the runtime context. */
export interface UpdaterComponentOptions {
  /** The sandbox's install (hot swap) for module deploys. */
  installModule?: (manifest: unknown, wasm: Uint8Array) => Promise<unknown>;
  /** The model store's install for model deploys. */
  installModel?: (name: string, bytes: Uint8Array, version: string) => Promise<unknown>;
  /** The installed version of a model (the source of model deltas). */
  installedModel?: (name: string) => Promise<{ sha256: string; path: string } | undefined>;
  /** Version of this executable when no slot is active. */
  factoryVersion: string;
  /** The installed version of a module, or null (module deploys refuse downgrades by it). */
  moduleVersion?: (name: string) => string | null;
  /** The installed version of a model, or null (model deploys refuse downgrades by it). */
  modelVersion?: (name: string) => Promise<string | null>;
}

/** The component plus its updater and hooks. */
export interface UpdaterComponent extends Component {
  /** The pipeline itself. */
  updater: Updater;
  /** Registers `update-check`, `module-deploy`, `model-deploy` and the status fields with MQTT. */
  attachMqtt(mqtt: MqttHooks): void;
}

/**
 * Throws `downgrade_refused` when `found` is older than the `installed`
 * version and the operator did not allow downgrades over MQTT.
 */
function refuseDowngrade(
  kind: "module" | "model",
  name: string,
  found: string,
  installed: string | null,
  allowed: boolean,
): void {
  if (allowed || installed === null || compareVersions(found, installed) >= 0) return;
  throw new DowngradeRefusedError(
    `${kind} ${name} ${found} is older than the installed ${installed} ` +
      "(mqtt.commands.allow_downgrade is off)",
  );
}

/**
 * Whether this process is the counted start of the trial version: the
 * launcher (or `edged update boot`) counts a start before it, and a
 * compiled build can also check that it runs from the slot's executable.
 */
async function startedAsTrial(updater: Updater, attempts: number): Promise<boolean> {
  if (attempts < 1) return false;
  if (!Deno.build.standalone) return true;
  const s = await updater.loadState();
  try {
    return (await Deno.realPath(Deno.execPath())) ===
      (await Deno.realPath(updater.store.binaryPath(s.active!)));
  } catch {
    return false;
  }
}

/** Builds the updater component from the runtime context and the `[update]` settings. */
export function updaterComponent(
  ctx: RuntimeContext,
  options: UpdaterComponentOptions,
): UpdaterComponent {
  const u = ctx.config.update;
  const startedAt = performance.now();
  let mqtt: MqttHooks | undefined;
  const failures = ctx.metrics.counter(
    "edged_update_failures_total",
    "Failed update operations (check, apply, deploy) by error code: update_verification_failed " +
      "(bytes or metadata that do not verify), update_download_failed (network), " +
      "insufficient_storage, update_cancelled, update_state, ...",
    ["operation", "code"],
  );
  const updater = new Updater({
    dataDir: ctx.dataDir,
    url: u.url,
    rootPath: u.root,
    triple: u.triple ?? Deno.build.target,
    deviceId: ctx.config.device_id,
    factoryVersion: options.factoryVersion,
    factoryBinary: u.binary ?? (Deno.build.standalone ? Deno.execPath() : undefined),
    rateLimit: u.rate_limit_bytes_per_s,
    burst: u.burst_bytes,
    retries: u.retries,
    idleTimeoutMs: u.timeout_s * 1000,
    minRateBytesPerS: u.min_rate_bytes_per_s,
    onFailure: (operation, err) => failures.inc({ operation, code: errorCode(err).code }),
    installModule: options.installModule,
    installModel: options.installModel,
    installedModel: options.installedModel,
    requestRestart: (reason) => ctx.requestExit(EXIT.RESTART, reason),
  });

  // The HTTP server waits for in-flight requests (an apply with ?wait=1)
  // before components stop: the download must stop first.
  ctx.stopping?.addEventListener("abort", () => void updater.close(), { once: true });

  let timer: ReturnType<typeof setTimeout> | undefined;
  let confirmTimer: ReturnType<typeof setInterval> | undefined;
  let stopped = false;
  let cachedVersion = options.factoryVersion;
  let cachedSlot: string | null = null;

  ctx.metrics.gauge(
    "edged_update_phase",
    "1 for the updater's current phase (idle, checking, downloading, installing, switching, restarting, trial, failed).",
    ["phase"],
    (set) => {
      for (const p of PHASES) set(p === updater.phase ? 1 : 0, { phase: p });
    },
  );
  ctx.metrics.gauge(
    "edged_update_info",
    "Running release version and slot (value 1).",
    ["version", "slot"],
    (set) => set(1, { version: cachedVersion, slot: cachedSlot ?? "factory" }),
  );
  ctx.metrics.gauge(
    "edged_update_download_bytes",
    "Bytes of the update download under way: received and total.",
    ["kind"],
    (set) => {
      const p = updater.progress;
      if (!p) return;
      set(p.received, { kind: "received" });
      set(p.total, { kind: "total" });
    },
  );
  const checks = ctx.metrics.counter(
    "edged_update_checks_total",
    "Update checks, by outcome (up-to-date, available, error).",
    ["outcome"],
  );

  const notify = () => mqtt?.refreshStatus();

  const periodic = async () => {
    if (stopped) return;
    try {
      if (updater.phase !== "trial") {
        const r = await updater.check();
        cachedVersion = r.current;
        checks.inc({ outcome: r.available ? "available" : "up-to-date" });
        if (r.available && u.auto_apply) await updater.apply();
      }
    } catch (err) {
      checks.inc({ outcome: "error" });
      log.warning("periodic update check failed: {error}", { error: (err as Error).message });
    }
    notify();
    if (!stopped) timer = setTimeout(periodic, jittered(u.check_interval_s * 1000));
  };

  /**
   * Boot confirmation: healthy = API up (it listens before components
   * start), store open and modules loaded (no readiness reasons), and MQTT
   * connected when a broker is configured.
   */
  const watchTrial = (version: string) => {
    const deadline = startedAt + u.boot_deadline_s * 1000;
    updater.setPhase("trial");
    log.info("running {version} on trial: it must be healthy within {s} s", {
      version,
      s: u.boot_deadline_s,
    });
    let busy = false;
    confirmTimer = setInterval(async () => {
      if (busy || stopped) return;
      busy = true;
      try {
        // A machine that is off (an adapter not connected) says nothing
        // about the new version's health: it must not roll an update back.
        const reasons = (ctx.readiness?.() ?? []).filter((r) =>
          !r.startsWith("update:") && !r.startsWith("adapters:")
        );
        // The MQTT component stays "ready" without a broker (uplink waits on
        // disk), but a new version must prove it can reach a configured one.
        if (ctx.config.mqtt.url && !/^edged_mqtt_connected 1$/m.test(ctx.metrics.render())) {
          reasons.push("mqtt: not connected to the broker");
        }
        if (reasons.length === 0) {
          clearInterval(confirmTimer);
          if (await updater.confirm()) {
            updater.setPhase("idle");
            log.info("confirmed {version}: healthy", { version });
            notify();
          }
        } else if (performance.now() > deadline) {
          clearInterval(confirmTimer);
          const reason = `${version} not healthy within ${u.boot_deadline_s} s: ${
            reasons.join("; ")
          }`;
          log.error("rolling back: {reason}", { reason });
          await updater.failTrial(reason);
        }
      } catch (err) {
        log.error("boot confirmation failed: {error}", { error: String(err) });
      } finally {
        busy = false;
      }
    }, 200);
  };

  return {
    name: "update",
    updater,
    routes: [{ path: "/api/v1/update", app: updateApi(updater) }],
    attachMqtt(m) {
      mqtt = m;
      // Commands obey local policy (docs/operators.md, "Trust"): an install
      // only where update.auto_apply or mqtt.commands.allow_apply says so, no
      // module downgrade unless mqtt.commands.allow_downgrade says so.
      const policy = ctx.config.mqtt.commands;
      m.registerCommand("update-check", async (params) => {
        if (params.apply === true && !u.auto_apply && !policy.allow_apply) {
          throw new ApplyNotAllowedError(
            "update-check may not apply here: update.auto_apply and mqtt.commands.allow_apply are off",
          );
        }
        const r = await updater.check();
        if (r.available && params.apply === true) return { ...r, apply: await updater.apply() };
        return r;
      });
      m.registerCommand("module-deploy", (params) => {
        const name = params.name;
        if (typeof name !== "string" || name === "") {
          throw new UpdateParamsError("module-deploy needs a string parameter 'name'");
        }
        const version = typeof params.version === "string" ? params.version : undefined;
        return updater.deployModule(name, version, (found) => {
          const installed = options.moduleVersion?.(name) ?? null;
          refuseDowngrade("module", name, found, installed, policy.allow_downgrade);
        });
      });
      m.registerCommand("model-deploy", async (params) => {
        const name = params.name;
        if (typeof name !== "string" || name === "") {
          throw new UpdateParamsError("model-deploy needs a string parameter 'name'");
        }
        const version = typeof params.version === "string" ? params.version : undefined;
        const installed = (await options.modelVersion?.(name)) ?? null;
        return updater.deployModel(name, version, (found) => {
          refuseDowngrade("model", name, found, installed, policy.allow_downgrade);
        });
      });
      m.setStatusProvider(() => ({
        version: cachedVersion,
        slot: cachedSlot,
        update: { phase: updater.phase },
      }));
    },
    async start() {
      try {
        const s = await updater.loadState();
        const run = await updater.running();
        cachedVersion = run.version;
        cachedSlot = run.slot;
        if (s.trial && s.trial.slot === s.active) {
          if (await startedAsTrial(updater, s.trial.attempts)) {
            watchTrial(s.trial.version);
          } else {
            // Confirming here would vouch for a version that is not running.
            log.warning(
              "{version} is installed in slot {slot} but this process was not started from it " +
                "by the launcher; restart with 'edged run --supervise' or the unit's ExecStartPre",
              { version: s.trial.version, slot: s.trial.slot },
            );
          }
        }
      } catch (err) {
        // A damaged update state must not keep the runtime from starting; the
        // launcher sets it aside at the next boot.
        updater.setPhase("failed");
        log.error("cannot read the update state: {error}", { error: String(err) });
        return;
      }
      if (updater.configured) {
        // The first check comes soon after start, jittered so a fleet
        // restarted together does not hit the server at once.
        timer = setTimeout(periodic, jittered(Math.min(60, u.check_interval_s) * 1000, 0.5));
      }
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      clearInterval(confirmTimer);
      // A download under way stops here and is resumed after the restart.
      await updater.close();
    },
  };
}
