/**
 * The models as a runtime component: the {@link NnService} (which the
 * modules component's pool links to), its API at `/api/v1/models`, its
 * metrics, and the engine stopped at shutdown.
 *
 * @module
 */

import type { Hono } from "hono";
import type { Metrics } from "../../runtime/mod.ts";
import { modelsApi } from "./api.ts";
import { NnService, type NnServiceOptions } from "./service.ts";

/** The component. */
export interface ModelsComponent {
  name: string;
  nn: NnService;
  stop(): Promise<void>;
  routes: { path: string; app: Hono }[];
}

/** Builds the models component; pass `nn` to the modules component as its `nn` option. */
export function modelsComponent(
  options: NnServiceOptions & { metrics?: Metrics },
): ModelsComponent {
  const nn = new NnService(options);
  if (options.metrics) {
    let heap = 0;
    options.metrics.gauge(
      "edged_nn_engine_running",
      "1 while the inference engine's Worker runs (it starts for modules granted nn).",
      [],
      (set) => {
        set(nn.engine.running ? 1 : 0);
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
      (set) => set(nn.engine.running ? heap : 0),
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
