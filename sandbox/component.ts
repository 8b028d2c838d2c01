/**
 * The sandbox as a runtime component (start, stop, readiness, routes).
 *
 * The module host (`module_host.ts`: the dispatcher, feeder, lanes, Worker
 * pool, message log, kv and everything under them) loads with the first
 * module: an edged with none installed on disk and none to preload builds it
 * on the first install (API, update server), and until then answers as a host
 * with no module does. The module metrics are registered at once either way.
 *
 * @module
 */

import type { Hono } from "hono";
import { join } from "node:path";
import { modulesApi } from "./api.ts";
import { ModuleNotFoundError } from "./errors.ts";
import type { CallOutcome } from "./instance.ts";
import type { ModuleHost, ModuleHostOptions } from "./module_host.ts";
import { moduleMemoryBudget } from "./manifest_limits.ts";
import { registerModuleMetrics } from "./module_metrics.ts";
import type { ModuleStatus } from "./module_record.ts";
import { ModuleStore } from "./persist.ts";

/** The runtime's component shape. */
export interface ModulesComponent {
  name: string;
  host: LazyModuleHost;
  start(): Promise<void>;
  stop(): Promise<void>;
  notReady(): string[];
  routes: { path: string; app: Hono }[];
}

/** What {@linkcode ModuleHost.notReady} says before its start. */
const LOADING = "modules: installed modules are still loading";

/**
 * A {@linkcode ModuleHost} built when first needed: by {@linkcode open}, or
 * by the first {@linkcode install}. Before that it has no module: `names()` is
 * empty and every module is not found, as in a host without modules.
 */
export class LazyModuleHost {
  readonly #options: ModuleHostOptions;
  #host: ModuleHost | undefined;
  #opening: Promise<ModuleHost> | undefined;
  #hostStart: Promise<void> | undefined;
  #started = false;
  #stopped = false;
  /** The modules' memory budget, read once (the host is given it). */
  #budget: number | undefined;

  /** A host for `options` (not built yet); its module metrics are registered now. */
  constructor(options: ModuleHostOptions) {
    this.#options = options.metrics && !options.moduleMetrics
      ? {
        ...options,
        moduleMetrics: registerModuleMetrics(
          options.metrics,
          () => this.names().map((n) => this.status(n)),
          () => ({ budget: this.#memoryBudget(), claimed: this.#host?.memoryClaimed ?? 0 }),
        ),
      }
      : options;
  }

  /** Builds the host (once; started too when the component has started). */
  open(): Promise<ModuleHost> {
    if (this.#host) return Promise.resolve(this.#host);
    if (this.#stopped) return Promise.reject(new Error("the module host has stopped"));
    this.#opening ??= (async () => {
      const { ModuleHost } = await import("./module_host.ts");
      const host = await ModuleHost.open({
        ...this.#options,
        memoryBudgetBytes: this.#memoryBudget(),
      });
      // Built after the component started: it is ready (not "loading") once it has started too.
      if (this.#started) await (this.#hostStart ??= host.start());
      this.#host = host;
      return host;
    })().catch((err) => {
      this.#opening = undefined;
      throw err;
    });
    return this.#opening;
  }

  #memoryBudget(): number {
    return this.#budget ??= moduleMemoryBudget(this.#options.memoryBudgetBytes);
  }

  /** Starts the host when it is built (else there is nothing to load yet). */
  async start(): Promise<void> {
    this.#started = true;
    const host = this.#host ?? await this.#opening;
    if (host) await (this.#hostStart ??= host.start());
  }

  /** Stops the host when it was built. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const host = this.#host ?? await this.#opening?.catch(() => undefined);
    await host?.stop();
  }

  /** Reasons the host is not ready (empty once started). */
  notReady(): string[] {
    if (this.#host) return this.#host.notReady();
    return this.#started ? [] : [LOADING];
  }

  /** Validates, persists and runs a module (building the host first); see {@linkcode ModuleHost.install}. */
  async install(
    manifestInput: unknown,
    bytes: Uint8Array,
    urlName?: string,
  ): Promise<ModuleStatus> {
    return await (await this.open()).install(manifestInput, bytes, urlName);
  }

  /** See {@linkcode ModuleHost.checkModule} (building the host first). */
  async checkModule(bytes: Uint8Array): Promise<string[]> {
    return await (await this.open()).checkModule(bytes);
  }

  /** See {@linkcode ModuleHost.remove}. @throws {ModuleNotFoundError} */
  remove(name: string, options?: { keepState?: boolean }): Promise<void> {
    if (!this.#host) return Promise.reject(new ModuleNotFoundError(name));
    return this.#host.remove(name, options);
  }

  /** Names of installed modules. */
  names(): string[] {
    return this.#host?.names() ?? [];
  }

  /** Statistics of one module. @throws {ModuleNotFoundError} */
  status(name: string): ModuleStatus {
    if (!this.#host) throw new ModuleNotFoundError(name);
    return this.#host.status(name);
  }

  /** See {@linkcode ModuleHost.deliver}. @throws {ModuleNotFoundError} */
  deliver(name: string, topic: string, payload: Uint8Array): Promise<CallOutcome> {
    if (!this.#host) return Promise.reject(new ModuleNotFoundError(name));
    return this.#host.deliver(name, topic, payload);
  }
}

/**
 * Builds the modules component: a {@link LazyModuleHost}, built at once when
 * modules are installed in `<dataDir>/modules` or to be preloaded, and its API
 * mounted at `/api/v1/modules`.
 */
export async function modulesComponent(options: ModuleHostOptions): Promise<ModulesComponent> {
  const host = new LazyModuleHost(options);
  const stored = new ModuleStore(join(options.dataDir, "modules")).manifests();
  if (stored.length > 0 || (options.preload?.length ?? 0) > 0) await host.open();
  return {
    name: "modules",
    host,
    start: () => host.start(),
    stop: () => host.stop(),
    notReady: () => host.notReady(),
    routes: [{ path: "/api/v1/modules", app: modulesApi(host) }],
  };
}
