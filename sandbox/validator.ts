/**
 * Validation off the runtime's thread: {@link ValidatorWorker} hands a
 * module's bytes to a Worker of its own (`validate_worker.ts`), started on the
 * first module and stopped after a quiet while, and answers what
 * `validateModule` would. Parsing and rewriting a module takes about a second
 * per 10 MB of dense code; on the runtime's thread that second is a second
 * without HTTP answers, ingest or module messages.
 *
 * @module
 */
import { workerEntry } from "../lib/mod.ts";
import { ModuleValidationError } from "./errors.ts";
import type { Manifest } from "./manifest.ts";
import type { ValidatedModule, ValidateOptions } from "./validate.ts";

/** Runtime → validator Worker. */
export type ToValidator =
  | { t: "validate"; id: number; bytes: Uint8Array; manifest: Manifest; options: ValidateOptions }
  | { t: "module_only"; id: number; bytes: Uint8Array };

/** Validator Worker → runtime. */
type FromValidator =
  | { id: number; ok: Omit<ValidatedModule, "manifest"> }
  | { id: number; reasons: string[] }
  | { id: number; error: string };

const ENTRY = workerEntry("sandbox/validate_worker.ts");

/** How long the Worker stays without work before it is stopped (its isolate holds memory). */
const IDLE_MS = 10_000;

interface Pending {
  resolve(m: FromValidator): void;
  reject(err: Error): void;
}

/** A Worker that validates modules, started when needed; see the module comment. */
export class ValidatorWorker {
  #worker: Worker | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #idle: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  /**
   * `validateModule(bytes, manifest, options)`, on the Worker.
   * @throws {ModuleValidationError} with every reason the module is refused.
   */
  async validate(
    bytes: Uint8Array,
    manifest: Manifest,
    options: ValidateOptions = {},
  ): Promise<ValidatedModule> {
    const m = await this.#ask((id) => ({ t: "validate", id, bytes, manifest, options }));
    if ("ok" in m) return { manifest, ...m.ok };
    if ("reasons" in m) throw new ModuleValidationError(m.reasons);
    throw new Error(`validating the module failed: ${m.error}`);
  }

  /** `moduleOnlyReasons(bytes)`, on the Worker. */
  async moduleOnly(bytes: Uint8Array): Promise<string[]> {
    const m = await this.#ask((id) => ({ t: "module_only", id, bytes }));
    if ("reasons" in m) return m.reasons;
    throw new Error(`checking the module failed: ${"error" in m ? m.error : "no reasons"}`);
  }

  /** Stops the Worker; what is under way fails. */
  stop(): void {
    this.#stopped = true;
    this.#halt(new Error("the module host stopped"));
  }

  #ask(make: (id: number) => ToValidator): Promise<FromValidator> {
    if (this.#stopped) return Promise.reject(new Error("the module host stopped"));
    const worker = this.#worker ??= this.#start();
    clearTimeout(this.#idle);
    this.#idle = undefined;
    const id = this.#nextId++;
    return new Promise<FromValidator>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage(make(id));
    });
  }

  #start(): Worker {
    const worker = new Worker(ENTRY, {
      type: "module",
      name: "edged-validator",
      deno: { permissions: "none" },
    } as WorkerOptions);
    worker.onmessage = (e: MessageEvent<FromValidator>) => {
      const p = this.#pending.get(e.data.id);
      if (!p) return;
      this.#pending.delete(e.data.id);
      p.resolve(e.data);
      if (this.#pending.size === 0) {
        this.#idle = setTimeout(() => this.#halt(undefined), IDLE_MS);
        Deno.unrefTimer(this.#idle);
      }
    };
    // A Worker that dies (out of memory on a hostile module) fails what it had; the next starts anew.
    worker.onerror = (e) => {
      e.preventDefault();
      this.#halt(new Error(`the validator Worker failed: ${e.message}`));
    };
    return worker;
  }

  #halt(err: Error | undefined): void {
    clearTimeout(this.#idle);
    this.#idle = undefined;
    this.#worker?.terminate();
    this.#worker = undefined;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err ?? new Error("the validator Worker stopped"));
  }
}
