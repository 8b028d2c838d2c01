/**
 * The `[adapters]` section: one array of blocks per southbound protocol
 * (`[[adapters.modbus]]`, each with `[[adapters.modbus.points]]`). A protocol
 * adds its block schema to {@linkcode adaptersSchema}'s object; the rules
 * across protocols (unique adapter names, one adapter per device and metric)
 * are checked there for every kind at once.
 *
 * @module
 */
import { z } from "zod";
import { opcuaAdapterSchema } from "./config_opcua.ts";
import { MODBUS_TYPE_REGISTERS, parseModbusUrl } from "./modbus_url.ts";

/** Adapter names: lowercase letters, digits and `-` (they become topic levels and labels). */
const ADAPTER_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Device ids and metrics become topic levels: the same rule as `POST /api/v1/data`. */
const READING_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

const adapterName = z.string().regex(
  ADAPTER_NAME,
  "must be 1-63 of a-z 0-9 - starting with a letter or digit",
);
const readingName = z.string().regex(
  READING_NAME,
  "must be 1-128 of A-Z a-z 0-9 . _ : - starting with a letter or digit",
);

// ---------------------------------------------------------------- Modbus

const modbusPointSchema = z.strictObject({
  metric: readingName.describe("the reading's metric: `sensors/{device_id}/{metric}`"),
  table: z.enum(["holding", "input", "coil", "discrete"]).default("holding")
    .describe("the Modbus table the point lives in"),
  address: z.number().int().min(0).max(65535)
    .describe("0-based address in the table (register 40001 is holding address 0)"),
  type: z.enum(["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"]).optional()
    .describe("value type; unset: `bool` for coil and discrete, `uint16` for registers"),
  word_order: z.enum(["big", "little"]).default("big")
    .describe("32/64-bit types: `big` puts the most significant register first"),
  scale: z.number().refine((v) => Number.isFinite(v) && v !== 0, "must be a finite non-zero number")
    .default(1).describe("value = raw × scale + offset"),
  offset: z.number().refine(Number.isFinite, "must be a finite number").default(0)
    .describe("value = raw × scale + offset"),
  writable: z.boolean().default(false)
    .describe("whether `devices/{adapter}/{metric}/set` writes it (holding and coil only)"),
}).superRefine((p, ctx) => {
  const bits = p.table === "coil" || p.table === "discrete";
  const type = p.type ?? (bits ? "bool" : "uint16");
  if (bits && type !== "bool") {
    ctx.addIssue({
      code: "custom",
      path: ["type"],
      message: `a ${p.table} point is a bool, got ${type}`,
    });
  }
  if (type === "bool" && (p.scale !== 1 || p.offset !== 0)) {
    ctx.addIssue({
      code: "custom",
      path: ["scale"],
      message: "a bool point takes no scale or offset",
    });
  }
  if (p.writable && (p.table === "input" || p.table === "discrete")) {
    ctx.addIssue({
      code: "custom",
      path: ["writable"],
      message: `${p.table} ${p.table === "input" ? "registers" : "inputs"} are read-only`,
    });
  }
  const span = bits ? 1 : MODBUS_TYPE_REGISTERS[type];
  if (p.address + span - 1 > 65535) {
    ctx.addIssue({
      code: "custom",
      path: ["address"],
      message: `a ${type} at ${p.address} spans ${span} registers, past address 65535`,
    });
  }
});

const modbusAdapterSchema = z.strictObject({
  name: adapterName.describe("unique across all adapters; topics `devices/{name}/...`"),
  url: z.string().superRefine((v, ctx) => {
    try {
      parseModbusUrl(v);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
    }
  }).describe("`tcp://HOST:PORT`, `rtu+tcp://HOST:PORT` or `rtu:///dev/ttyX?baud=&parity=`"),
  unit_id: z.number().int().min(0).max(255).default(1)
    .describe("the unit (slave) id; 1-247 on RTU"),
  device_id: readingName.optional()
    .describe("readings become `sensors/{device_id}/{metric}`; unset: the adapter's name"),
  poll_ms: z.number().int().min(10).max(86_400_000).default(1000)
    .describe("milliseconds between the starts of two polls"),
  timeout_ms: z.number().int().min(10).max(60_000).default(500)
    .describe("milliseconds to wait for each response"),
  points: z.array(modbusPointSchema).min(1).max(10_000)
    .describe("`[[adapters.modbus.points]]`, at least one"),
}).superRefine((a, ctx) => {
  let framing: string | undefined;
  try {
    framing = parseModbusUrl(a.url).framing;
  } catch { /* reported on url */ }
  if (framing === "rtu" && (a.unit_id < 1 || a.unit_id > 247)) {
    ctx.addIssue({
      code: "custom",
      path: ["unit_id"],
      message: "an RTU unit id is from 1 to 247 (0 is broadcast, which gets no response)",
    });
  }
  const seen = new Map<string, number>();
  a.points.forEach((p, i) => {
    const first = seen.get(p.metric);
    if (first !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["points", i, "metric"],
        message: `'${p.metric}' is already points[${first}] of this adapter`,
      });
    } else {
      seen.set(p.metric, i);
    }
  });
});

/** One `[[adapters.modbus]]` block as validated. */
export type ModbusAdapterConfig = z.infer<typeof modbusAdapterSchema>;
/** One `[[adapters.modbus.points]]` block as validated. */
export type ModbusPointConfig = ModbusAdapterConfig["points"][number];

// ---------------------------------------------------------------- all kinds

/** Points of all adapters together: each keeps its status in memory and in the API's answer. */
export const MAX_POINTS = 100_000;

/**
 * The `[adapters]` section. A new protocol adds `kind: z.array(schema).default([])`
 * here; its blocks need `name` and may have `device_id` and `points[].metric`,
 * which the checks below cover.
 */
export const adaptersSchema = z.strictObject({
  modbus: z.array(modbusAdapterSchema).max(256).default([]),
  opcua: z.array(opcuaAdapterSchema).max(256).default([]),
}).superRefine((section, ctx) => {
  const names = new Map<string, string>();
  const readings = new Map<string, string>();
  let total = 0;
  for (const [kind, blocks] of Object.entries(section)) {
    (blocks as { name: string; device_id?: string; points: { metric: string }[] }[]).forEach(
      (a, i) => {
        const where = `${kind}[${i}]`;
        const other = names.get(a.name);
        if (other) {
          ctx.addIssue({
            code: "custom",
            path: [kind, i, "name"],
            message: `'${a.name}' is already the name of adapters.${other}`,
          });
        }
        names.set(a.name, where);
        const device = a.device_id ?? a.name;
        total += a.points.length;
        if (total > MAX_POINTS && total - a.points.length <= MAX_POINTS) {
          ctx.addIssue({
            code: "custom",
            path: [kind, i, "points"],
            message: `more than ${MAX_POINTS} points in all adapters together`,
          });
        }
        a.points.forEach((p, j) => {
          const key = `${device}\u0000${p.metric}`;
          const owner = readings.get(key);
          if (owner && !owner.startsWith(`${where}.`)) {
            ctx.addIssue({
              code: "custom",
              path: [kind, i, "points", j, "metric"],
              message: `device '${device}' metric '${p.metric}' is already read by adapters.${
                owner.split(".")[0]
              }`,
            });
          }
          readings.set(key, `${where}.${j}`);
        });
      },
    );
  }
});

/** The validated `[adapters]` section. */
export type AdaptersConfig = z.infer<typeof adaptersSchema>;
