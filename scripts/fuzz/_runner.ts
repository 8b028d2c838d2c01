/**
 * The main-thread side of a fuzz run: one Worker per target, a watchdog that
 * terminates the worker when an input runs past the time bound (so a hang is
 * detected, not suffered) or the process RSS passes its bound, and a restart
 * from the next input.
 *
 * @module
 */
import { MAX_INPUT } from "./_mutate.ts";
import { type Finding, SHARED_HEADER, type WorkerJob, type WorkerMessage } from "./_protocol.ts";

/** Options for {@linkcode runTarget}. */
export interface RunOptions {
  /** Run seed; inputs are a pure function of (seed, index). @default {1} */
  seed?: number;
  /** Wall-clock budget in seconds. @default {10} */
  seconds?: number;
  /** Per-input time bound in ms. @default {2000} */
  timeoutMs?: number;
  /** Heap growth allowed across the run (after GC), bytes. @default {128 MiB} */
  heapBoundBytes?: number;
  /** Process RSS bound, bytes. @default {2 GiB} */
  rssBoundBytes?: number;
  /** Stop after this many inputs. */
  maxInputs?: number;
  /** Worker restarts (after hangs) before the target is abandoned. @default {20} */
  maxRestarts?: number;
}

/** What a run of one target did. */
export interface TargetReport {
  target: string;
  seed: number;
  inputs: number;
  elapsedMs: number;
  /** Outcome label to count: `accepted`, `refused:DeltaError/bad-magic`, ... */
  labels: Record<string, number>;
  findings: Finding[];
}

/** Longest a target's setup may take before the run is called broken. */
const SETUP_TIMEOUT_MS = 120_000;

/** Longest to wait for a stopped worker's memory to be given back. */
const RSS_SETTLE_MS = 10_000;

/** Resolves once the process RSS is below `bound`, or after `ms`. */
async function rssBelow(bound: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Deno.memoryUsage().rss > bound && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface WorkerEnd {
  /** Milliseconds the worker spent on inputs (after its setup). */
  runMs: number;
  inputs: number;
  labels: Record<string, number>;
  findings: Finding[];
  /** Index after which to continue, when the worker was stopped early. */
  stoppedAt?: number;
}

function runWorker(job: Omit<WorkerJob, "shared">, opts: Required<RunOptions>): Promise<WorkerEnd> {
  const shared = new SharedArrayBuffer(SHARED_HEADER + MAX_INPUT);
  const ctl = new Int32Array(shared, 0, 4);
  const buf = new Uint8Array(shared, SHARED_HEADER);
  Atomics.store(ctl, 0, -1);
  const worker = new Worker(new URL("./_worker_entry.js", import.meta.url), { type: "module" });
  const findings: Finding[] = [];
  let inputs = 0;
  let labels: Record<string, number> = {};
  return new Promise<WorkerEnd>((resolve) => {
    let lastIndex = -2;
    let since = Date.now();
    const started = Date.now();
    let runStart = 0;
    const runMs = () => (runStart ? Date.now() - runStart : 0);
    const stop = (kind: Finding["kind"] | null, label: string, message: string) => {
      clearInterval(watchdog);
      worker.terminate();
      const index = Atomics.load(ctl, 0);
      if (kind && index >= 0) {
        findings.push({
          target: job.target,
          kind,
          label,
          message,
          seed: job.seed,
          index,
          input: buf.slice(0, Atomics.load(ctl, 2)),
        });
      }
      if (index < 0) {
        findings.push({
          target: job.target,
          kind: "crash",
          label: "setup",
          message: `target setup failed: ${message}`,
          seed: job.seed,
          index: -1,
          input: new Uint8Array(),
        });
      }
      const end = {
        runMs: runMs(),
        inputs,
        labels,
        findings,
        stoppedAt: index < 0 ? undefined : index,
      };
      // The RSS is the whole process's: the next worker starts only once the
      // stopped one's memory is given back, or it would take the blame.
      if (kind === "memory") rssBelow(opts.rssBoundBytes, RSS_SETTLE_MS).then(() => resolve(end));
      else resolve(end);
    };
    const watchdog = setInterval(() => {
      const index = Atomics.load(ctl, 0);
      const state = Atomics.load(ctl, 1);
      const now = Date.now();
      if (state === 1 && !runStart) runStart = now;
      if (index !== lastIndex) {
        lastIndex = index;
        since = now;
      }
      const rss = state === 1 || state === 3 ? Deno.memoryUsage().rss : 0;
      if (state === 0 && now - started > SETUP_TIMEOUT_MS) {
        stop(null, "setup", `no input started within ${SETUP_TIMEOUT_MS} ms`);
      } else if (rss > opts.rssBoundBytes || state === 3) {
        stop(
          "memory",
          "rss",
          `process RSS ${(rss / 2 ** 20).toFixed(0)} MiB passed the bound of ` +
            `${(opts.rssBoundBytes / 2 ** 20).toFixed(0)} MiB`,
        );
      } else if (state === 1 && now - since > opts.timeoutMs) {
        stop("hang", "hang", `input ${index} still running after ${now - since} ms`);
      }
    }, 20);
    worker.onmessage = (ev: MessageEvent<WorkerMessage>) => {
      const m = ev.data;
      if (m.type === "finding") findings.push(m.finding);
      else {
        inputs = m.inputs;
        labels = m.labels;
      }
      if (m.type === "done") {
        clearInterval(watchdog);
        worker.terminate();
        resolve({ runMs: runMs(), inputs, labels, findings });
      }
    };
    worker.onerror = (ev) => {
      ev.preventDefault();
      stop("crash", "uncaught", String(ev.message ?? ev));
    };
    worker.postMessage({ ...job, shared } satisfies WorkerJob);
  });
}

function withDefaults(o: RunOptions): Required<RunOptions> {
  return {
    seed: o.seed ?? 1,
    seconds: o.seconds ?? 10,
    timeoutMs: o.timeoutMs ?? 2000,
    heapBoundBytes: o.heapBoundBytes ?? 128 * 2 ** 20,
    rssBoundBytes: o.rssBoundBytes ?? 2 * 2 ** 30,
    maxInputs: o.maxInputs ?? Number.MAX_SAFE_INTEGER,
    maxRestarts: o.maxRestarts ?? 20,
  };
}

/** Fuzzes one target for `seconds`, restarting its worker after each hang. */
export async function runTarget(target: string, options: RunOptions = {}): Promise<TargetReport> {
  const opts = withDefaults(options);
  const t0 = Date.now();
  let left = opts.seconds * 1000;
  const report: TargetReport = {
    target,
    seed: opts.seed,
    inputs: 0,
    elapsedMs: 0,
    labels: {},
    findings: [],
  };
  let start = 0;
  for (let restarts = 0; restarts <= opts.maxRestarts; restarts++) {
    const end = await runWorker({
      target,
      seed: opts.seed,
      start,
      budgetMs: left,
      maxInputs: opts.maxInputs - report.inputs,
      heapBoundBytes: opts.heapBoundBytes,
      rssBoundBytes: opts.rssBoundBytes,
    }, opts);
    report.inputs += end.inputs;
    for (const [k, v] of Object.entries(end.labels)) report.labels[k] = (report.labels[k] ?? 0) + v;
    report.findings.push(...end.findings);
    left -= Math.max(end.runMs, 1);
    if (end.stoppedAt === undefined || left <= 0) break;
    report.inputs++; // the input that hung
    start = end.stoppedAt + 1;
  }
  report.elapsedMs = Date.now() - t0;
  return report;
}

/** Runs the given inputs through `target` (regression replay) with the same bounds. */
export async function replay(
  target: string,
  inputs: Uint8Array[],
  options: RunOptions = {},
): Promise<Finding[]> {
  const opts = withDefaults(options);
  const findings: Finding[] = [];
  let start = 0;
  while (start < inputs.length) {
    const end = await runWorker({
      target,
      seed: 0,
      start,
      budgetMs: Number.MAX_SAFE_INTEGER,
      heapBoundBytes: opts.heapBoundBytes,
      rssBoundBytes: opts.rssBoundBytes,
      inputs: inputs.slice(start),
    }, opts);
    // Indices inside the worker count from `start` over the sliced list.
    findings.push(...end.findings);
    if (end.stoppedAt === undefined) break;
    start = end.stoppedAt + 1;
  }
  return findings;
}
