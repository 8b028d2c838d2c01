/**
 * Messages between the fuzz runner (main thread) and its worker.
 *
 * @module
 */

/** Bytes before the input copy in the shared buffer: index, state, input length. */
export const SHARED_HEADER = 16;

/** One unit of work for a worker. */
export interface WorkerJob {
  target: string;
  seed: number;
  /** First input index. */
  start: number;
  /** Milliseconds of fuzzing after setup (setup time does not count). */
  budgetMs: number;
  /** Stop after this many inputs. */
  maxInputs?: number;
  /** Heap growth allowed across the run, in bytes. */
  heapBoundBytes: number;
  /** Process RSS allowed, in bytes (checked by the runner while an input runs, by us after it). */
  rssBoundBytes: number;
  /** Replay: run exactly these inputs instead of generating. */
  inputs?: Uint8Array[];
  /** Int32 [index, state (1 running, 2 done, 3 past the RSS bound after input index), input length, -] then the input bytes. */
  shared: SharedArrayBuffer;
}

/** What made an input a finding. */
export type FindingKind = "crash" | "oracle" | "hang" | "memory";

/** One input that broke a promise. */
export interface Finding {
  target: string;
  kind: FindingKind;
  /** Error class (and code), or `hang` / `heap-growth` / `rss`. */
  label: string;
  message: string;
  stack?: string;
  seed: number;
  index: number;
  input: Uint8Array;
}

/** Worker to runner. */
export type WorkerMessage =
  | { type: "finding"; finding: Finding }
  | { type: "stats"; inputs: number; labels: Record<string, number> }
  | { type: "done"; inputs: number; labels: Record<string, number> };
