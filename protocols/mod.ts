/**
 * Wire protocols: MQTT uplink (durable store-and-forward), retained status
 * with last will, downlink commands and broker subscriptions into the bus;
 * southbound adapters (the framework in `adapters/`, Modbus in `modbus/`,
 * OPC UA in `opcua/`).
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
export * from "./mqtt/mod.ts";
export * from "./adapters/mod.ts";
export * from "./modbus/mod.ts";
export * from "./opcua/mod.ts";
