/**
 * The sandbox as a runtime component (start, stop, readiness, routes).
 *
 * @module
 */

import type { Hono } from "hono";
import { modulesApi } from "./api.ts";
import { ModuleHost, type ModuleHostOptions } from "./module_host.ts";

/** The runtime's component shape. */
export interface ModulesComponent {
  name: string;
  host: ModuleHost;
  start(): Promise<void>;
  stop(): Promise<void>;
  notReady(): string[];
  routes: { path: string; app: Hono }[];
}

/**
 * Builds the modules component: a {@link ModuleHost} (`ModuleHost.open`) and
 * its API mounted at `/api/v1/modules`.
 */
export async function modulesComponent(options: ModuleHostOptions): Promise<ModulesComponent> {
  const host = await ModuleHost.open(options);
  return {
    name: "modules",
    host,
    start: () => host.start(),
    stop: () => host.stop(),
    notReady: () => host.notReady(),
    routes: [{ path: "/api/v1/modules", app: modulesApi(host) }],
  };
}
