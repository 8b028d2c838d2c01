/**
 * The OPC UA southbound adapter: subscribes to a server's nodes with real
 * security (Sign / SignAndEncrypt, pinned or explicitly trusted server
 * certificates), turns data changes into durable readings with their source
 * timestamps, and writes writable nodes.
 *
 * Importing this module costs nothing beyond `node:crypto`: node-opcua is
 * loaded by `start()` of an adapter, so only a device with an
 * `[[adapters.opcua]]` block pays for it.
 *
 * @example
 * ```ts ignore
 * import { createOpcuaAdapter } from "./protocols/opcua/mod.ts";
 * const adapter = createOpcuaAdapter(config.adapters.opcua[0], { dataDir });
 * await adapter.start(sink);
 * ```
 *
 * @module
 */
import type { OpcuaAdapterConfig } from "../../runtime/mod.ts";
import { OpcuaAdapter, type OpcuaAdapterOptions } from "./adapter.ts";

export { OpcuaAdapter, type OpcuaAdapterOptions, type OpcuaAdapterStatus } from "./adapter.ts";
export { ServerTrust, type TrustOptions, type TrustResult } from "./trust.ts";

/** Builds the adapter of one `[[adapters.opcua]]` block (nothing is opened until `start`). */
export function createOpcuaAdapter(
  config: OpcuaAdapterConfig,
  options: OpcuaAdapterOptions,
): OpcuaAdapter {
  return new OpcuaAdapter(config, options);
}
