/**
 * What edged is made of: the components built from the shared runtime
 * services, in start order (they stop in reverse). The only place that wires
 * subsystems to each other.
 *
 * @module
 */
import { type Component, type RuntimeContext, statusComponent, VERSION } from "../runtime/mod.ts";
import { modelsComponent, modulesComponent } from "../sandbox/mod.ts";
// protocols/ by its parts: Modbus and OPC UA (protocols/modbus/, protocols/opcua/)
// load only when a block of theirs is configured, not in an idle edged.
import { mqttComponent } from "../protocols/mqtt/mod.ts";
import {
  ADAPTER_WRITE_COMMAND,
  adaptersComponent,
  adapterWriteCommand,
} from "../protocols/adapters/mod.ts";
import { updaterComponent } from "../ota/update/mod.ts";

/**
 * Builds the components of the runtime from the shared services, in start
 * order (they stop in reverse).
 */
export async function createComponents(ctx: RuntimeContext): Promise<Component[]> {
  const m = ctx.config.modules;
  const n = ctx.config.nn;
  // Stops after the modules: their instances let go of the engine first.
  const models = modelsComponent({
    dataDir: ctx.dataDir,
    metrics: ctx.metrics,
    memoryBytes: n.memory_bytes,
    deadlineMs: n.deadline_ms,
    fuelPerMs: n.fuel_per_ms,
    maxElements: n.max_elements,
    maxModelBytes: n.max_model_bytes,
    idleStopMs: n.idle_stop_s * 1000,
  });
  const modules = await modulesComponent({
    nn: models.nn,
    dataDir: ctx.dataDir,
    bus: ctx.bus,
    store: ctx.store,
    readings: ctx.readings,
    metrics: ctx.metrics,
    preload: m.preload,
    queueCapacity: m.queue_capacity,
    queueBytes: m.queue_bytes,
    queueBytesTotal: m.queue_bytes_total,
    maxLag: m.max_lag,
    messageLogBytes: m.message_log_bytes,
    faultLimit: m.fault_limit,
    quarantineMs: m.quarantine_ms,
    logLinesPerSecond: m.log_lines_per_second,
    threadMsPerSecond: m.thread_ms_per_second,
    workers: m.workers,
    memoryBudgetBytes: m.memory_budget_bytes,
  });
  // MQTT first: it starts before and stops after the modules, so their last
  // uplink messages still reach the durable outbox.
  const mqtt = mqttComponent({
    config: ctx.config.mqtt,
    deviceId: ctx.config.device_id,
    bus: ctx.bus,
    store: ctx.store,
    readings: ctx.readings,
    metrics: ctx.metrics,
    maxPendingReadings: ctx.config.store.max_pending_readings,
    modules: modules.host,
  });
  // After the modules (their writes find the adapters) and before the
  // updater; they stop before the modules and MQTT, so their last readings
  // are committed and sent.
  const adapters = adaptersComponent({
    config: ctx.config.adapters,
    factories: {
      modbus: async (block) =>
        new (await import("../protocols/modbus/mod.ts")).ModbusAdapter(block),
      // node-opcua is loaded by the adapter's start(), only when a block exists.
      opcua: async (block) =>
        (await import("../protocols/opcua/mod.ts")).createOpcuaAdapter(block, {
          dataDir: ctx.dataDir,
        }),
    },
    bus: ctx.bus,
    readings: ctx.readings,
    metrics: ctx.metrics,
  });
  // Broker clients write a machine's point only through this command, off
  // unless mqtt.commands.allow lists it (docs/operators.md, "Trust").
  mqtt.registerCommand(ADAPTER_WRITE_COMMAND, adapterWriteCommand(adapters));
  // Last: its boot confirmation waits for everything before it to be ready.
  const update = updaterComponent(ctx, {
    factoryVersion: VERSION,
    installModule: (manifest, wasm) => modules.host.install(manifest, wasm),
    installModel: (name, bytes, version) => models.nn.install(name, bytes, { version }),
    installedModel: (name) => models.nn.installed(name),
    moduleVersion: (name) =>
      modules.host.names().includes(name) ? modules.host.status(name).version ?? null : null,
    modelVersion: (name) => models.nn.get(name).then((m) => m.version ?? null, () => null),
  });
  update.attachMqtt(mqtt);
  const status = statusComponent(ctx, {
    modules: () => modules.host.names().map((n) => modules.host.status(n)),
    update: () => update.updater.status(),
    adapters: () => adapters.overview(),
  });
  return [models, mqtt, modules, adapters, update, status];
}
