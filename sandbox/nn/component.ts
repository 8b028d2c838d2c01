/**
 * The models as a runtime component: the {@link NnService} (which the
 * modules component's pool links to), its API at `/api/v1/models`, its
 * metrics, and the engine stopped at shutdown.
 *
 * The service (`service.ts`, the engine's side and everything under it) loads
 * when first needed: the first models API call, model deploy, or module
 * granted `nn` that loads ({@linkcode LazyNnService}). Until then the engine
 * is stopped and has never crashed, which the metrics say without loading it.
 *
 * @module
 */

import type { Hono } from "hono";
import type { Metrics } from "../../runtime/mod.ts";
import { modelsApi } from "./api.ts";
import type { NnLinkInit } from "./link.ts";
import type {
  EngineStatus,
  InstallModelOptions,
  ModelStatus,
  NnPoolLink,
  NnService,
  NnServiceOptions,
} from "./service.ts";

/**
 * An {@link NnService} built when first needed; until then it has no
 * instance, no lane and a stopped engine, as a service nothing has used.
 */
export class LazyNnService implements NnPoolLink {
  readonly #options: NnServiceOptions;
  #service: NnService | undefined;
  #opening: Promise<NnService> | undefined;
  #stopped = false;

  /** A service for `options` (not built yet). */
  constructor(options: NnServiceOptions) {
    this.#options = options;
  }

  /** The service, built once (and stopped at once when the component has stopped). */
  open(): Promise<NnService> {
    if (this.#service) return Promise.resolve(this.#service);
    this.#opening ??= (async () => {
      const { NnService } = await import("./service.ts");
      const service = new NnService(this.#options);
      if (this.#stopped) service.stop();
      this.#service = service;
      return service;
    })().catch((err) => {
      this.#opening = undefined;
      throw err;
    });
    return this.#opening;
  }

  /** Whether the engine's Worker runs. */
  get running(): boolean {
    return this.#service?.engine.running ?? false;
  }

  /** Times the engine died and was started again (for metrics). */
  get crashCounts(): { crashes: number; restarts: number } {
    return this.#service?.crashCounts ?? { crashes: 0, restarts: 0 };
  }

  /** See {@linkcode NnService.admit}. */
  async admit(
    lane: number,
    inst: number,
    models: string[],
    module: string,
  ): Promise<NnLinkInit | undefined> {
    return await (await this.open()).admit(lane, inst, models, module);
  }

  /** See {@linkcode NnService.release} (nothing was admitted before the service was built). */
  release(inst: number): void {
    this.#service?.release(inst);
  }

  /** See {@linkcode NnService.laneGone}. */
  laneGone(lane: number): void {
    this.#service?.laneGone(lane);
  }

  /** See {@linkcode NnService.install}. */
  async install(
    name: string,
    bytes: Uint8Array,
    options?: InstallModelOptions,
  ): Promise<ModelStatus> {
    return await (await this.open()).install(name, bytes, options);
  }

  /** See {@linkcode NnService.remove}. */
  async remove(name: string): Promise<void> {
    return await (await this.open()).remove(name);
  }

  /** See {@linkcode NnService.installed}. */
  async installed(name: string): Promise<{ sha256: string; path: string } | undefined> {
    return await (await this.open()).installed(name);
  }

  /** See {@linkcode NnService.list}. */
  async list(): Promise<ModelStatus[]> {
    return await (await this.open()).list();
  }

  /** See {@linkcode NnService.get}. */
  async get(name: string): Promise<ModelStatus> {
    return await (await this.open()).get(name);
  }

  /** See {@linkcode NnService.engineStatus}; a service not built yet has a stopped engine. */
  async engineStatus(): Promise<EngineStatus> {
    if (this.#service) return await this.#service.engineStatus();
    return {
      state: "stopped",
      running: false,
      start_ms: 0,
      heap_bytes: 0,
      js_heap_bytes: 0,
      models: [],
      crashes: 0,
      restarts: 0,
      last_crash: null,
      restart_in_ms: 0,
    };
  }

  /** Stops the engine for good (a service built later is stopped at once). */
  stop(): void {
    this.#stopped = true;
    this.#service?.stop();
  }
}

/** The component. */
export interface ModelsComponent {
  name: string;
  nn: LazyNnService;
  stop(): Promise<void>;
  routes: { path: string; app: Hono }[];
}

/** Builds the models component; pass `nn` to the modules component as its `nn` option. */
export function modelsComponent(
  options: NnServiceOptions & { metrics?: Metrics },
): ModelsComponent {
  const nn = new LazyNnService(options);
  if (options.metrics) {
    let heap = 0;
    options.metrics.gauge(
      "edged_nn_engine_running",
      "1 while the inference engine's Worker runs (it starts for modules granted nn).",
      [],
      (set) => {
        set(nn.running ? 1 : 0);
        // The heap is read asynchronously: the scrape shows the previous reading.
        void nn.engineStatus().then((s) => heap = s.heap_bytes);
      },
    );
    options.metrics.counterFunc(
      "edged_nn_engine_crashes_total",
      "Times the inference engine died (its wasm instance aborted, its Worker ended).",
      () => nn.crashCounts.crashes,
    );
    options.metrics.counterFunc(
      "edged_nn_engine_restarts_total",
      "Times the inference engine was started again after dying (with a back-off when it dies again soon).",
      () => nn.crashCounts.restarts,
    );
    options.metrics.gauge(
      "edged_nn_engine_heap_bytes",
      "The inference engine's wasm heap (capped by nn.memory_bytes).",
      [],
      (set) => set(nn.running ? heap : 0),
    );
  }
  return {
    name: "models",
    nn,
    stop: () => {
      nn.stop();
      return Promise.resolve();
    },
    routes: [{ path: "/api/v1/models", app: modelsApi(nn) }],
  };
}
