/**
 * What the module host makes of each call's outcome. At once: the statistics
 * and the call-duration metric, a fault into the quarantine (a module that
 * ran out of fuel also to the probation Worker), the call's effects staged
 * for the next group transaction (`effects.ts`). Once that transaction is
 * durable: the publications go to live bus subscribers, the effect lag is
 * observed and the cursors move. A call that held its Worker past its
 * deadline is counted and moves its module to the probation Worker.
 *
 * @module
 */
import { getLogger } from "../lib/mod.ts";
import type { Bus } from "../runtime/mod.ts";
import { type FaultKind, WorkerGoneError } from "./errors.ts";
import type { Effect, Effects } from "./effects.ts";
import type { Feeder } from "./feed.ts";
import type { InstalledModules } from "./installed_modules.ts";
import type { Delivery, ModuleRecord } from "./module_record.ts";
import type { ModuleMetrics } from "./module_metrics.ts";
import type { WireOutcome } from "./pool_protocol.ts";
import type { Quarantine } from "./quarantine.ts";

const log = getLogger(["edged", "modules"]);

/** What the outcomes are booked into. */
export interface OutcomesOptions {
  installed: InstalledModules;
  quarantine: Quarantine;
  effects: Effects;
  feeder: Feeder;
  bus: Pick<Bus, "deliver">;
  metrics?: ModuleMetrics;
  /** The wall-clock deadline of one call, from its fuel budget. */
  deadlineMs: (fuelPerMessage: number) => number;
  /** Moves `r` to the probation Worker, unless it is there already. */
  toProbation: (r: ModuleRecord) => void;
  /** Starts `r` over from its committed state on a fresh instance (a `host` fault, `why`). */
  restart: (r: ModuleRecord, why: string) => void;
}

/** The books of one module host's calls. */
export class Outcomes {
  readonly #o: OutcomesOptions;

  /** Outcomes booked into `options`. */
  constructor(options: OutcomesOptions) {
    this.#o = options;
  }

  /**
   * Books one outcome: statistics and faults now; its effects (kv writes,
   * publications, the cursor past `d`) are staged for the next group
   * transaction and show once it is durable. A fault's effects are only the
   * cursor: the message was handled.
   */
  apply(
    r: ModuleRecord,
    inst: number,
    out: WireOutcome,
    d: Delivery | undefined,
    gen: number,
    done?: Effect["done"],
  ): void {
    const name = r.manifest.name;
    (r.observeCall ??= this.#o.metrics?.callDuration.series({ module: name }))?.(out.ms / 1000);
    r.s.messages_in++;
    r.s.fuel_used += out.fuelUsed;
    r.s.last_fuel_used = out.fuelUsed;
    if (inst === r.inst) {
      r.memoryBytes = out.memoryBytes;
      r.logsDropped = out.logsDropped;
    }
    if (!this.#o.installed.isCurrent(r, gen)) {
      done?.reject(new WorkerGoneError(r.lane, "restarted the module: its effects were not kept"));
      return;
    }
    const kv = out.error ? undefined : out.kv;
    const published = out.error ? [] : out.published;
    if (out.error) this.fault(r, out.error);
    else this.#o.quarantine.ok(r);
    if (!d && !kv?.length && published.length === 0) {
      // A messages API call with nothing to commit (no cursor of its own): answered at once.
      done?.resolve();
      return;
    }
    this.#o.effects.stage({ r, gen, d, kv, published, done });
  }

  /** Effects of one group transaction are durable: they show now. */
  durable(
    effects: Effect[],
    cursors: Map<ModuleRecord, { readings: number; messages: number }>,
  ): void {
    const now = performance.timeOrigin + performance.now();
    let refused: Map<ModuleRecord, Effect> | undefined;
    for (const e of effects) {
      const r = e.r;
      const name = r.manifest.name;
      if (e.refused) {
        (refused ??= new Map()).set(r, e);
        continue;
      }
      for (const p of e.published) {
        try {
          this.#o.bus.deliver({ topic: p.topic, payload: p.payload, source: `module:${name}` });
          r.s.messages_out++;
        } catch (err) {
          log.error("bus refused {topic} from module {name}: {error}", {
            topic: p.topic,
            name,
            error: String(err),
          });
        }
      }
      if (e.d) {
        const ms = Math.max(0, now - e.d.at);
        r.observeLag(ms);
        (r.observeEffectLag ??= this.#o.metrics?.effectLag.series({ module: name }))?.(ms / 1000);
      }
    }
    for (const [r, pos] of cursors) {
      const s = r.streams;
      s.readings.committed = Math.max(s.readings.committed, pos.readings);
      s.messages.committed = Math.max(s.messages.committed, pos.messages);
      this.#o.feeder.committed(r);
    }
    // Its Worker made the refused kv writes and its kv cache serves them: the module
    // starts over from what committed (past the refused messages, whose cursors did).
    for (const [r, e] of refused ?? []) {
      if (this.#o.installed.isCurrent(r, e.gen)) {
        this.#o.restart(r, `effects refused: ${e.refused}`);
      }
    }
  }

  /** Counts a fault of `r` towards its quarantine. */
  fault(r: ModuleRecord, error: { kind: FaultKind; message: string }): void {
    this.#o.quarantine.fault(r, error);
    // A module that used up its fuel may do it again, holding its Worker for the whole
    // budget each time: it goes on in the probation Worker, away from well-behaved modules.
    // (A fault discards the instance anyway, so the move costs it nothing.)
    if (error.kind === "fuel") this.#o.toProbation(r);
  }

  /**
   * A call held its Worker past its deadline (see the wall-clock guard in
   * `pool.ts`): counted, and the module moves to the probation Worker so its
   * next slow call holds up nobody else. The call itself is not stopped (it
   * cannot be) and its outcome stands when it completes.
   */
  overrun(lane: number, inst: number, heldMs: number, running: boolean): void {
    const r = this.#o.installed.byInstance(inst);
    if (!r) return;
    r.s.overruns++;
    const deadline = this.#o.deadlineMs(r.manifest.limits.fuel_per_message);
    log.warn(
      "module {name} held sandbox worker {lane} for {ms} ms{still}, past its deadline of {deadline} ms",
      {
        name: r.manifest.name,
        lane,
        ms: heldMs,
        still: running ? " and still runs" : "",
        deadline: Math.round(deadline),
      },
    );
    this.#o.toProbation(r);
  }
}
