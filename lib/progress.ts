/**
 * Progress display for long command-line operations (building deltas,
 * applying updates, diffing large files): a bar redrawn in place on a
 * terminal, plain lines otherwise (logs, CI, pipes), nothing with `quiet`.
 * Written to stderr so stdout stays clean for `--json` and pipes.
 *
 * @example
 * ```ts
 * import { createProgress } from "./progress.ts";
 * const p = createProgress("download", { total: 4096, unit: "bytes" });
 * p.update(2048);
 * p.update(4096);
 * p.done("downloaded");
 * ```
 *
 * @module
 */

/** Where progress goes; `Deno.stderr` fits. */
export interface ProgressStream {
  writeSync(p: Uint8Array): number;
  isTerminal(): boolean;
}

/** Options of {@linkcode createProgress}. */
export interface ProgressOptions {
  /** The amount that means 100 %; unknown totals show the amount only. */
  total?: number;
  /** How amounts read: `bytes` (KiB, MiB with a rate) or plain counts. @default {"count"} */
  unit?: "bytes" | "count";
  /** Print nothing. @default {false} */
  quiet?: boolean;
  /** @default {Deno.stderr} */
  stream?: ProgressStream;
  /** Width of the bar in characters. @default {30} */
  width?: number;
  /** Plain mode prints a line at every this many percent. @default {10} */
  stepPercent?: number;
}

/** A progress display for one operation. */
export interface Progress {
  /** Reports `done` (absolute, not a delta); `total` and `detail` may change on the way. */
  update(done: number, total?: number, detail?: string): void;
  /** Ends the display (a final newline on a terminal, `message` if given). */
  done(message?: string): void;
}

/** Formats a byte count with binary units: `512 B`, `1.5 KiB`, `40.0 MiB`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** Formats seconds for people: `42 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const REDRAW_MS = 100;

/** Creates a progress display labelled `label`. */
export function createProgress(label: string, options: ProgressOptions = {}): Progress {
  const {
    unit = "count",
    quiet = false,
    stream = Deno.stderr,
    width = 30,
    stepPercent = 10,
  } = options;
  if (!(width >= 1)) throw new RangeError(`width must be at least 1, got ${width}`);
  if (!(stepPercent > 0 && stepPercent <= 100)) {
    throw new RangeError(`stepPercent must be in (0, 100], got ${stepPercent}`);
  }
  if (quiet) return { update() {}, done() {} };
  const enc = new TextEncoder();
  const write = (s: string) => stream.writeSync(enc.encode(s));
  const tty = stream.isTerminal();
  const started = performance.now();
  let total = options.total;
  let lastDraw = -Infinity;
  let lastStep = -1;
  let drawn = false;
  let current = 0;
  let note = "";

  const amount = (n: number) => unit === "bytes" ? formatBytes(n) : String(n);
  const describe = (): string => {
    const secs = (performance.now() - started) / 1000;
    const parts = [total ? `${amount(current)} of ${amount(total)}` : amount(current)];
    if (unit === "bytes" && secs >= 1) parts.push(`${formatBytes(current / secs)}/s`);
    if (total && current > 0 && current < total && secs >= 2) {
      parts.push(`ETA ${formatDuration(secs * (total - current) / current)}`);
    }
    if (note) parts.push(note);
    return parts.join(", ");
  };

  return {
    update(done, newTotal, detail) {
      current = done;
      if (newTotal !== undefined) total = newTotal;
      if (detail !== undefined) note = detail;
      const fraction = total ? Math.max(0, Math.min(1, done / total)) : undefined;
      if (tty) {
        const now = performance.now();
        if (now - lastDraw < REDRAW_MS && fraction !== 1) return;
        lastDraw = now;
        drawn = true;
        if (fraction === undefined) return void write(`\r${label} ${describe()}\x1b[K`);
        const full = Math.round(fraction * width);
        const bar = "#".repeat(full) + "-".repeat(width - full);
        const pct = `${Math.floor(fraction * 100)}%`.padStart(4);
        write(`\r${label} [${bar}] ${pct} ${describe()}\x1b[K`);
        return;
      }
      // Plain lines: one per step, or every 5 s while the total is unknown.
      if (fraction === undefined) {
        const now = performance.now();
        if (now - lastDraw < 5000) return;
        lastDraw = now;
        return void write(`${label}: ${describe()}\n`);
      }
      const step = Math.floor(fraction * 100 / stepPercent);
      if (step === lastStep) return;
      lastStep = step;
      write(`${label}: ${Math.min(100, step * stepPercent)}% (${describe()})\n`);
    },
    done(message) {
      if (tty && drawn) write("\n");
      const secs = (performance.now() - started) / 1000;
      if (message) write(`${label}: ${message} in ${formatDuration(secs)}\n`);
    },
  };
}
