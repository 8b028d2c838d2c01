/**
 * The settings the configuration schema holds, found by walking it: every
 * key with its `EDGED_*` variable and kind (what the environment can set),
 * the keys of the arrays of tables that only a file can give, and the plain
 * rules of `_config_rules_table.ts` (`config_rules.ts`). The configuration
 * reference reads these; the environment layer reads the rules.
 *
 * @module
 */
import { isDeepStrictEqual } from "node:util";
import { z } from "zod";
import { configSchema } from "./config_schema.ts";
import type { ConfigRule, Leaf, StringRule } from "./config_rules.ts";

export type { Leaf } from "./config_rules.ts";

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

/** Settings whose zod `refine` has a twin in `config_rules.ts` (by name). */
const NAMED_CUSTOM_CHECKS: Record<string, string> = { listen: "listen" };

type Check = { check: string; [k: string]: unknown };

function checksOf(s: z.ZodType): Check[] {
  const def = s._zod.def as { checks?: { _zod: { def: Check } }[] };
  return (def.checks ?? []).map((c) => c._zod.def);
}

function unsupported(path: string, what: string): never {
  throw new Error(`config rules: ${path}: ${what} has no plain rule (config_rules.ts)`);
}

function stringRule(s: z.ZodType, path: string): StringRule {
  const r: StringRule = {};
  for (const c of checksOf(s)) {
    if (c.check === "min_length") r.min = c.minimum as number;
    else if (c.check === "max_length") r.max = c.maximum as number;
    else if (c.check === "string_format" && c.format === "regex") {
      (r.patterns ??= []).push(c.pattern as RegExp);
    } else if (c.check !== "custom") unsupported(path, `check '${c.check}'`);
  }
  return r;
}

/**
 * The schema as plain rules (`config_rules.ts`), in its order: what
 * `_config_rules_table.ts` holds. Throws on a construct the rules cannot
 * express, so a schema change that needs one fails the test of that file.
 */
export function configRules(): ConfigRule[] {
  const out: ConfigRule[] = [];
  const walk = (shape: Record<string, z.ZodType>, prefix: string[]) => {
    for (const [key, schema] of Object.entries(shape)) {
      const path = [...prefix, key];
      const name = path.join(".");
      const hasDefault = schema instanceof z.ZodDefault;
      const dflt = hasDefault ? (schema as z.ZodDefault<z.ZodType>).def.defaultValue : undefined;
      if (!hasDefault && !(schema instanceof z.ZodOptional)) {
        unsupported(name, "a setting without a default");
      }
      const inner = unwrap(schema);
      const custom = checksOf(inner).some((c) => c.check === "custom");
      if (inner instanceof z.ZodObject) {
        const plain = !custom && Object.values(inner.shape as Record<string, z.ZodType>).every(
          (f) =>
            !(unwrap(f) instanceof z.ZodArray) ||
            !(unwrap((unwrap(f) as z.ZodArray<z.ZodType>).element as z.ZodType) instanceof
              z.ZodObject),
        );
        if (plain) {
          // Its default must be what its settings' defaults make.
          if (!isDeepStrictEqual(dflt, inner.parse({}))) unsupported(name, "a section default");
          walk(inner.shape as Record<string, z.ZodType>, path);
        } else {
          // Arrays of tables and checks across keys: only a file gives them, zod judges them.
          out.push({ path, type: "file-only", default: structuredClone(dflt) });
        }
        continue;
      }
      const rule: ConfigRule = {
        path,
        env: `EDGED_${path.join("_").toUpperCase()}`,
        type: "string",
      };
      if (hasDefault) rule.default = structuredClone(dflt);
      if (custom) rule.custom = NAMED_CUSTOM_CHECKS[name] ?? "zod";
      if (inner instanceof z.ZodString) {
        rule.string = stringRule(inner, name);
      } else if (inner instanceof z.ZodNumber) {
        rule.type = "number";
        for (const c of checksOf(inner)) {
          if (c.check === "number_format" && c.format === "safeint") rule.int = true;
          else if (c.check === "greater_than" && c.inclusive) rule.min = c.value as number;
          else if (c.check === "less_than" && c.inclusive) rule.max = c.value as number;
          else unsupported(name, `check '${c.check}'`);
        }
      } else if (inner instanceof z.ZodBoolean) {
        rule.type = "boolean";
      } else if (inner instanceof z.ZodEnum) {
        rule.type = "enum";
        rule.options = inner.options.map(String);
      } else if (
        inner instanceof z.ZodArray && unwrap(inner.element as z.ZodType) instanceof z.ZodString
      ) {
        rule.type = "array";
        const arr = stringRule(inner, name);
        rule.items = { each: stringRule(unwrap(inner.element as z.ZodType), `${name}[]`) };
        if (arr.min !== undefined) rule.items.min = arr.min;
        if (arr.max !== undefined) rule.items.max = arr.max;
      } else {
        unsupported(name, `a ${inner.constructor.name}`);
      }
      out.push(rule);
    }
  };
  walk(configSchema.shape as unknown as Record<string, z.ZodType>, []);
  return out;
}

function render(v: unknown): string {
  if (v instanceof RegExp) return String(v);
  if (Array.isArray(v)) return `[${v.map(render).join(", ")}]`;
  if (v && typeof v === "object") {
    return `{ ${
      Object.entries(v).map(([k, x]) =>
        `${/^[a-z_]+$/.test(k) ? k : JSON.stringify(k)}: ${render(x)}`
      ).join(", ")
    } }`;
  }
  return JSON.stringify(v);
}

/** `_config_rules_table.ts` as {@linkcode configRules} makes it (before `deno fmt`). */
export function configRulesModule(): string {
  return [
    "// Generated from runtime/config_schema.ts by `deno task config-docs`; do not edit.",
    "// tests/runtime/config_rules_test.ts fails while it differs from the schema.",
    'import type { ConfigRule } from "./config_rules.ts";',
    "",
    "/** The settings of the configuration schema as plain rules, in its order. */",
    `export const CONFIG_RULES: readonly ConfigRule[] = [${
      configRules().map((r) => render(r)).join(",\n")
    }];`,
    "",
  ].join("\n");
}
