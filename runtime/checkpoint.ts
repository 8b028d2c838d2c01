/**
 * Checkpoints off the runtime's thread. SQLite copies its write-ahead log
 * back into the database file in a checkpoint, by default inside the COMMIT
 * that takes the log past 1000 pages, with two fsyncs: a stall of the event
 * loop of several milliseconds (tens on a slow disk) every few megabytes
 * written. edged turns that off (`wal_autocheckpoint = 0` on its
 * connections) and runs PASSIVE checkpoints on a Worker of its own instead,
 * started when the store is first written and stopped again after a quiet
 * minute, so an idle edged holds no extra thread.
 *
 * @module
 */
import { workerEntry } from "../lib/mod.ts";
import type { FromCheckpointer, ToCheckpointer } from "./checkpoint_worker.ts";

/** Options for {@linkcode Checkpointer}. */
export interface CheckpointerOptions {
  /** Writes after which a checkpoint runs (at most one at a time). @default {64} */
  everyCommits?: number;
  /** Milliseconds without a write after which the Worker stops. @default {60000} */
  idleStopMs?: number;
}

const WORKER_URL = workerEntry("runtime/checkpoint_worker.ts");

/** Runs the checkpoints of one database on a Worker. */
export class Checkpointer {
  readonly #path: string;
  readonly #every: number;
  readonly #idleStopMs: number;
  #worker: Worker | undefined;
  #running = false;
  #since = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the last write committed (performance.now()). */
  #lastWrite = 0;
  /** Checkpoints done. */
  checkpoints = 0;
  /** The last checkpoint's failure, if any. */
  lastError: string | undefined;

  /** Whether its Worker runs (it stops after a quiet `idleStopMs`). */
  get active(): boolean {
    return this.#worker !== undefined;
  }

  /** A checkpointer for the database file at `path`. */
  constructor(path: string, options: CheckpointerOptions = {}) {
    this.#path = path;
    this.#every = options.everyCommits ?? 64;
    this.#idleStopMs = options.idleStopMs ?? 60_000;
  }

  /** A write committed: checkpoint once enough have piled up. */
  committed(): void {
    this.#since++;
    if (!this.#running && this.#since >= this.#every) this.#run();
    this.#lastWrite = performance.now();
    this.#armIdle(this.#idleStopMs);
  }

  /**
   * Looks for a quiet `idleStopMs` in `ms`, if it is not looking already: one
   * timer, moved on when it fires early, rather than one per commit.
   */
  #armIdle(ms: number): void {
    if (this.#idleTimer !== undefined) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      const quiet = performance.now() - this.#lastWrite;
      if (quiet < this.#idleStopMs) this.#armIdle(this.#idleStopMs - quiet);
      else this.#idle();
    }, ms);
    Deno.unrefTimer(this.#idleTimer);
  }

  #run(): void {
    if (!this.#worker) {
      const w = new Worker(WORKER_URL, { type: "module", name: "edged-checkpoint" });
      w.onmessage = (e: MessageEvent<FromCheckpointer>) => {
        this.#running = false;
        this.checkpoints++;
        this.lastError = e.data.error;
        if (this.#since >= this.#every) this.#run();
      };
      w.onerror = (e) => {
        e.preventDefault();
        this.lastError = e.message;
        this.#running = false;
        this.#worker?.terminate();
        this.#worker = undefined;
      };
      w.postMessage({ t: "open", path: this.#path } satisfies ToCheckpointer);
      this.#worker = w;
    }
    this.#since = 0;
    this.#running = true;
    this.#worker.postMessage({ t: "checkpoint" } satisfies ToCheckpointer);
  }

  #idle(): void {
    if (this.#running) {
      this.#armIdle(1000);
      return;
    }
    if (this.#since > 0) {
      // A last checkpoint of what came since; the Worker stops after it.
      this.#run();
      this.#armIdle(this.#idleStopMs);
    } else this.close();
  }

  /** Stops the Worker (a checkpoint in progress finishes its SQLite call first). */
  close(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#running = false;
  }
}
