/**
 * MQTT: the durable store-and-forward uplink, retained status with last
 * will, downlink commands and broker subscriptions into the bus.
 *
 * @module
 */
export {
  type MqttComponent,
  mqttComponent,
  type MqttComponentOptions,
  type StatusProvider,
} from "./component.ts";
export {
  CommandError,
  commandError,
  type CommandHandler,
  CommandRegistry,
  type CommandResult,
  stringParam,
} from "./commands.ts";
export type { ModuleRemover } from "./builtin_commands.ts";
export { backoffDelay, type BackoffOptions } from "./backoff.ts";
export { Outbox, type OutboxPolicy, type OutboxRow } from "./outbox.ts";
export { type Publisher, Uplink, type UplinkStats } from "./uplink.ts";
export { Connection, MqttConfigError, redactUrl } from "./connection.ts";
