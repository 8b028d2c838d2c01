/**
 * The configuration's settings as plain rules, without zod: each key's kind,
 * bounds, pattern and default, generated from the zod schema
 * (`config_schema.ts`) into `_config_rules_table.ts` by `deno task
 * config-docs` (a test fails when that file is stale). `config.ts` reads the
 * environment through them, and {@linkcode parseByRules} gives a
 * configuration every value of which passes them without loading zod (~10
 * MiB of an idle edged's memory, with the manifest schema's). Anything else
 * (a value that breaks a rule, an unknown key, a block of adapters) goes to
 * the zod schema, whose messages are the only ones; a test checks that both
 * agree on every input.
 *
 * @module
 */

/** Device ids: 1-128 of A-Z a-z 0-9 . _ - starting alphanumeric (the host name's default too). */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** A bearer token travels in `Authorization: Bearer TOKEN` (RFC 6750): one run of visible ASCII. */
export const TOKEN_RE = /^[\x21-\x7e]+$/;

/** Splits `HOST:PORT`; null when malformed. */
export function parseListen(v: string): { hostname: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]\s]+)):(\d{1,5})$/.exec(v);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  return { hostname: m[1] ?? m[2], port };
}

/** What kind of value a setting takes (how an environment variable is read). */
export type Leaf = "string" | "number" | "boolean" | "array" | "enum";

/** The checks of a string, or of each string in an array. */
export interface StringRule {
  /** Fewest characters (UTF-16 code units, as `String.length`). */
  min?: number;
  /** Most characters. */
  max?: number;
  /** Patterns the whole value must match. */
  patterns?: RegExp[];
}

/** One setting of the schema, in its order. */
export interface ConfigRule {
  path: string[];
  /** Its `EDGED_*` variable; absent for what only a file can give (`adapters`). */
  env?: string;
  /** What the value is; `file-only` for blocks that the zod schema always checks. */
  type: "string" | "number" | "boolean" | "enum" | "array" | "file-only";
  /** The default, as the schema gives it; absent: the setting is optional and left out. */
  default?: unknown;
  /** Numbers: a safe integer. */
  int?: boolean;
  /** Numbers: inclusive bounds. */
  min?: number;
  max?: number;
  /** Strings. */
  string?: StringRule;
  /** Arrays: checks of the array's length, and of each element (strings). */
  items?: { min?: number; max?: number; each: StringRule };
  /** Enums: the values allowed. */
  options?: string[];
  /** A check only code can make, by name (see `CUSTOM_CHECKS`); unnamed ones go to zod. */
  custom?: string;
}

/** Checks the schema makes in code (zod `refine`), by the name its rule carries. */
const CUSTOM_CHECKS: Record<string, (v: unknown) => boolean> = {
  listen: (v) => typeof v === "string" && parseListen(v) !== null,
};

/** The custom checks {@linkcode parseByRules} knows. */
export const CUSTOM_CHECK_NAMES: readonly string[] = Object.keys(CUSTOM_CHECKS);

function stringPasses(v: unknown, r: StringRule): boolean {
  if (typeof v !== "string") return false;
  if (r.min !== undefined && v.length < r.min) return false;
  if (r.max !== undefined && v.length > r.max) return false;
  return (r.patterns ?? []).every((p) => {
    p.lastIndex = 0;
    return p.test(v);
  });
}

function passes(v: unknown, r: ConfigRule): boolean {
  if (r.custom !== undefined && !CUSTOM_CHECKS[r.custom]?.(v)) return false;
  switch (r.type) {
    case "string":
      return stringPasses(v, r.string ?? {});
    case "number":
      return typeof v === "number" && Number.isFinite(v) &&
        (!r.int || Number.isSafeInteger(v)) &&
        (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max);
    case "boolean":
      return typeof v === "boolean";
    case "enum":
      return typeof v === "string" && (r.options ?? []).includes(v);
    case "array": {
      if (!Array.isArray(v) || !r.items) return false;
      const { min, max, each } = r.items;
      if ((min !== undefined && v.length < min) || (max !== undefined && v.length > max)) {
        return false;
      }
      return v.every((item) => stringPasses(item, each));
    }
    default:
      return false;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function copy(v: unknown): unknown {
  return v === undefined ? undefined : structuredClone(v);
}

/**
 * The configuration `raw` makes when every key in it is one of `rules` and
 * every value passes its rule: the defaults, in the schema's order, with the
 * given values in their place. Undefined when anything does not pass, or
 * needs the zod schema to judge it: then only the schema can say what is
 * wrong, and how.
 */
export function parseByRules(
  raw: Record<string, unknown>,
  rules: readonly ConfigRule[],
): Record<string, unknown> | undefined {
  // Every key given must be a setting or a section holding settings.
  const sections = new Set<string>();
  const leaves = new Map<string, ConfigRule>();
  for (const r of rules) {
    for (let i = 1; i < r.path.length; i++) sections.add(r.path.slice(0, i).join("."));
    leaves.set(r.path.join("."), r);
  }
  const known = (obj: Record<string, unknown>, prefix: string): boolean =>
    Object.entries(obj).every(([key, v]) => {
      const path = prefix ? `${prefix}.${key}` : key;
      const leaf = leaves.get(path);
      if (leaf) return leaf.type !== "file-only" && passes(v, leaf);
      return sections.has(path) && isPlainObject(v) && known(v, path);
    });
  if (!isPlainObject(raw) || !known(raw, "")) return undefined;

  const out: Record<string, unknown> = {};
  for (const r of rules) {
    let given: unknown = raw;
    for (const key of r.path) given = (given as Record<string, unknown> | undefined)?.[key];
    const value = given !== undefined ? copy(given) : copy(r.default);
    let target = out;
    for (const key of r.path.slice(0, -1)) {
      target[key] ??= {};
      target = target[key] as Record<string, unknown>;
    }
    if (value !== undefined) target[r.path[r.path.length - 1]] = value;
  }
  return out;
}
