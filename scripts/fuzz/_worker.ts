/// <reference lib="deno.worker" />
/**
 * The fuzz worker: sets up one target and runs inputs `start, start+1, ...`
 * until the deadline. Before each input it writes the index and the input
 * bytes into shared memory, so the runner on the main thread can see a hang
 * (the index stops moving) and still name the input after terminating us.
 *
 * @module
 */
import { inputAt, runOne } from "./_target.ts";
import { TARGETS } from "./targets/mod.ts";
import { SHARED_HEADER, type WorkerJob, type WorkerMessage } from "./_protocol.ts";

const post = (m: WorkerMessage) => self.postMessage(m);

self.onmessage = async (ev: MessageEvent<WorkerJob>) => {
  const job = ev.data;
  const ctl = new Int32Array(job.shared, 0, 4);
  const buf = new Uint8Array(job.shared, SHARED_HEADER);
  const target = TARGETS[job.target];
  const h = await target.setup();
  const labels: Record<string, number> = {};
  let inputs = 0;
  let lastPost = Date.now();
  let baseline = -1;
  let memReported = false;
  const gc = (globalThis as { gc?: () => void }).gc;
  const fixed = job.inputs; // replay mode: exactly these inputs
  const deadline = Date.now() + job.budgetMs;
  Atomics.store(ctl, 1, 1);
  for (let i = job.start;; i++) {
    if (fixed ? i - job.start >= fixed.length : Date.now() >= deadline) break;
    if (job.maxInputs !== undefined && inputs >= job.maxInputs) break;
    let input: Uint8Array;
    try {
      input = fixed ? fixed[i - job.start] : inputAt(h, job.seed, i);
      if (h.expand) input = await h.expand(input);
    } catch (err) {
      // A generator bug is the fuzzer's, not the target's: count it and move on.
      labels["generator-error"] = (labels["generator-error"] ?? 0) + 1;
      if (labels["generator-error"] === 1) console.error(`fuzz generator error: ${err}`);
      continue;
    }
    const n = Math.min(input.length, buf.length);
    buf.set(input.subarray(0, n));
    Atomics.store(ctl, 2, n);
    Atomics.store(ctl, 0, i);
    const out = await runOne(h, input);
    // An input that left the process past the RSS bound is named here: the
    // runner's watchdog, every 20 ms, would otherwise blame whichever input
    // runs when it looks. State 3 hands over to it; we run nothing more and
    // post nothing (not `done`) until it stops us.
    if (Deno.memoryUsage().rss > job.rssBoundBytes) {
      Atomics.store(ctl, 1, 3);
      return;
    }
    inputs++;
    labels[out.label] = (labels[out.label] ?? 0) + 1;
    if (out.kind !== "ok") {
      post({
        type: "finding",
        finding: {
          target: job.target,
          kind: out.kind,
          label: out.label,
          message: out.message.slice(0, 2000),
          stack: out.stack?.slice(0, 4000),
          seed: job.seed,
          index: i,
          input: input.slice(),
        },
      });
    }
    // Heap growth across inputs (leaks, caches without bounds). Checked
    // after a GC when --expose-gc is on, else against a looser bound.
    if (!fixed && inputs % 256 === 0) {
      gc?.();
      const used = Deno.memoryUsage().heapUsed;
      if (baseline < 0) baseline = used;
      else if (!memReported && used - baseline > job.heapBoundBytes * (gc ? 1 : 4)) {
        memReported = true;
        post({
          type: "finding",
          finding: {
            target: job.target,
            kind: "memory",
            label: "heap-growth",
            message:
              `heap grew by ${((used - baseline) / 2 ** 20).toFixed(1)} MiB over ${inputs} ` +
              `inputs (bound ${(job.heapBoundBytes / 2 ** 20).toFixed(0)} MiB)`,
            seed: job.seed,
            index: i,
            input: input.slice(),
          },
        });
      }
    }
    if (Date.now() - lastPost > 250) {
      lastPost = Date.now();
      post({ type: "stats", inputs, labels: { ...labels } });
      // Let the message go out and timers run (async targets may need them).
      await new Promise((r) => setTimeout(r, 0));
    }
  }
  Atomics.store(ctl, 1, 2);
  await h.close?.();
  post({ type: "done", inputs, labels });
};
