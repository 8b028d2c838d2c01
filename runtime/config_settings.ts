/**
 * The settings the configuration schema holds, found by walking it: every
 * key with its `EDGED_*` variable and kind (what the environment can set),
 * and the keys of the arrays of tables that only a file can give. The
 * environment layer and the configuration reference read these.
 *
 * @module
 */
import { z } from "zod";
import { configSchema } from "./config_schema.ts";

/** What kind of value a setting takes (how an environment variable is read). */
export type Leaf = "string" | "number" | "boolean" | "array" | "enum";

function unwrap(s: z.ZodType): z.ZodType {
  let cur = s;
  while (cur instanceof z.ZodDefault || cur instanceof z.ZodOptional) {
    cur = (cur as z.ZodDefault<z.ZodType> | z.ZodOptional<z.ZodType>).unwrap() as z.ZodType;
  }
  return cur;
}

function leafKind(inner: z.ZodType): Leaf {
  if (inner instanceof z.ZodNumber) return "number";
  if (inner instanceof z.ZodBoolean) return "boolean";
  if (inner instanceof z.ZodArray) return "array";
  if (inner instanceof z.ZodEnum) return "enum";
  return "string";
}

/** Every setting path with its env variable name and leaf kind. */
export function settings(): { path: string[]; env: string; kind: Leaf; options?: string[] }[] {
  const out: { path: string[]; env: string; kind: Leaf; options?: string[] }[] = [];
  const walk = (shape: Record<string, z.ZodType>, prefix: string[]) => {
    for (const [key, schema] of Object.entries(shape)) {
      const inner = unwrap(schema);
      if (inner instanceof z.ZodObject) {
        walk(inner.shape as Record<string, z.ZodType>, [...prefix, key]);
        continue;
      }
      // Arrays of tables (`[[adapters.modbus]]`) exist only in the file: see blockSettings().
      if (
        inner instanceof z.ZodArray && unwrap(inner.element as z.ZodType) instanceof z.ZodObject
      ) {
        continue;
      }
      const kind = leafKind(inner);
      const path = [...prefix, key];
      const options = inner instanceof z.ZodEnum ? inner.options.map(String) : undefined;
      out.push({ path, env: `EDGED_${path.join("_").toUpperCase()}`, kind, options });
    }
  };
  walk(configSchema.shape as unknown as Record<string, z.ZodType>, []);
  return out;
}

/** One key of a block in an array of tables, for the reference. */
export interface BlockSetting {
  /** `adapters.modbus[].points[].metric` */
  key: string;
  kind: Leaf;
  options?: string[];
  /** The default, or undefined when the key is required or unset by default. */
  default?: unknown;
  required: boolean;
  description?: string;
}

/**
 * Every key of the arrays of tables (`[[adapters.modbus]]`,
 * `[[adapters.modbus.points]]`): settings that only a configuration file
 * can give.
 */
export function blockSettings(): BlockSetting[] {
  const out: BlockSetting[] = [];
  const walk = (shape: Record<string, z.ZodType>, prefix: string, inBlock: boolean) => {
    for (const [key, schema] of Object.entries(shape)) {
      const inner = unwrap(schema);
      const path = prefix ? `${prefix}.${key}` : key;
      if (inner instanceof z.ZodObject) {
        walk(inner.shape as Record<string, z.ZodType>, path, inBlock);
        continue;
      }
      const element = inner instanceof z.ZodArray ? unwrap(inner.element as z.ZodType) : null;
      if (element instanceof z.ZodObject) {
        walk(element.shape as Record<string, z.ZodType>, `${path}[]`, true);
        continue;
      }
      if (!inBlock) continue;
      const hasDefault = schema instanceof z.ZodDefault;
      const kind = leafKind(inner);
      out.push({
        key: path,
        kind,
        options: inner instanceof z.ZodEnum ? inner.options.map(String) : undefined,
        default: hasDefault
          ? (schema as z.ZodDefault<z.ZodType>).def.defaultValue as unknown
          : undefined,
        required: !hasDefault && !(schema instanceof z.ZodOptional),
        description: schema.description ?? inner.description,
      });
    }
  };
  walk(configSchema.shape as unknown as Record<string, z.ZodType>, "", false);
  return out;
}
