/**
 * Turns the schema's complaints into lines naming each setting as it is
 * written (`adapters.modbus[0].points[2].type`), the block it is in and where
 * its value came from.
 *
 * @module
 */
import type { z } from "zod";

/**
 * A setting's path as written in TOML terms (`adapters.modbus[0].points[2].type`)
 * and, inside arrays of tables, which block it is (`adapter 'plc1', point
 * 'temperature'`), since a long file's block numbers are hard to count.
 */
function displayPath(
  path: readonly PropertyKey[],
  raw: unknown,
): { path: string; context: string } {
  let text = "";
  const names: string[] = [];
  let cur: unknown = raw;
  for (const key of path) {
    cur = cur && typeof cur === "object" ? (cur as Record<PropertyKey, unknown>)[key] : undefined;
    if (typeof key === "number") {
      text += `[${key}]`;
      const block = cur as Record<string, unknown> | undefined;
      const label = typeof block?.name === "string"
        ? `adapter '${block.name}'`
        : typeof block?.metric === "string"
        ? `point '${block.metric}'`
        : null;
      if (label) names.push(label);
    } else {
      text += `${text ? "." : ""}${String(key)}`;
    }
  }
  return { path: text, context: names.length > 0 ? ` [${names.join(", ")}]` : "" };
}

/**
 * One line per issue: the setting, where its value came from (`origin`, by
 * dotted path: `in FILE`, `from EDGED_...`, `from --flag`), the block it is in,
 * and the schema's message.
 */
export function issueLines(
  issues: readonly z.core.$ZodIssue[],
  raw: Record<string, unknown>,
  origin: ReadonlyMap<string, string>,
): string[] {
  return issues.map((issue) => {
    const path = issue.path.map(String).join(".");
    const shown = displayPath(issue.path, raw);
    if (issue.code === "unrecognized_keys") {
      const keys = issue.keys.map((k) => (path ? `${path}.${k}` : k));
      const where = keys.map((k) => origin.get(k)).find(Boolean) ?? "";
      const names = issue.keys.map((k) => `'${shown.path ? `${shown.path}.${k}` : k}'`);
      return `unknown setting ${names.join(", ")} ${where}${shown.context}`.trim();
    }
    const where = originOf(issue.path.map(String), origin);
    return `setting '${shown.path}'${where ? ` (${where})` : ""}${shown.context}: ${issue.message}`;
  });
}

/**
 * Where the setting at `path` came from, or, for one that is not set (a rule
 * across settings names the one missing), where its nearest enclosing block
 * came from.
 */
function originOf(path: string[], origin: ReadonlyMap<string, string>): string | undefined {
  for (let n = path.length; n > 0; n--) {
    const where = origin.get(path.slice(0, n).join("."));
    if (where) return where;
  }
  return undefined;
}
