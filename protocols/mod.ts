/**
 * Wire protocols: MQTT uplink (durable store-and-forward), retained status
 * with last will, downlink commands and broker subscriptions into the bus.
 *
 * @example
 * ```ts ignore
 * import { mqttComponent } from "./protocols/mod.ts";
 * const mqtt = mqttComponent({ config: cfg.mqtt, deviceId, bus, store, readings, metrics, maxPendingReadings });
 * mqtt.registerCommand("update-check", async () => ({ available: false }));
 * ```
 *
 * @module
 */
export {
  type MqttComponent,
  mqttComponent,
  type MqttComponentOptions,
  type StatusProvider,
} from "./mqtt/component.ts";
export {
  CommandError,
  type CommandHandler,
  CommandRegistry,
  type CommandResult,
  stringParam,
} from "./mqtt/commands.ts";
export type { ModuleRemover } from "./mqtt/builtin_commands.ts";
export { backoffDelay, type BackoffOptions } from "./mqtt/backoff.ts";
export { Outbox, type OutboxPolicy, type OutboxRow } from "./mqtt/outbox.ts";
export { type Publisher, Uplink, type UplinkStats } from "./mqtt/uplink.ts";
export { Connection, MqttConfigError, redactUrl } from "./mqtt/connection.ts";
