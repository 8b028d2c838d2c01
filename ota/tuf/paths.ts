/**
 * Target path patterns and metadata file names.
 *
 * @module
 */
import { sha256Hex } from "./_bytes.ts";
import type { DelegatedRole } from "./metadata.ts";

const encoder = new TextEncoder();

/**
 * Percent-encodes everything except `A-Z a-z 0-9 _ . - ~`, as Python's
 * `urllib.parse.quote(name, safe="")` does. Role names become URL path
 * segments and file names this way, so "../x" or "a/b" stay one segment.
 */
export function quoteName(name: string): string {
  let out = "";
  for (const b of encoder.encode(name)) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9_.~-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Converts one shell-style pattern segment (`*`, `?`, `[seq]`, `[!seq]`) to a RegExp source. */
function segmentRegex(pattern: string): string {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = pattern.slice(i + 1, end);
      const negate = body.startsWith("!");
      if (negate) body = body.slice(1);
      re += `[${negate ? "^" : ""}${body.replace(/\\/g, "\\\\").replace(/\^/g, "\\^")}]`;
      i = end;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return re;
}

/**
 * Section 4.5 `paths`: a target path matches a pattern when both have the
 * same number of "/"-separated parts and each part matches the pattern's
 * part shell-style ("*" never crosses a "/").
 */
export function pathMatches(pattern: string, targetPath: string): boolean {
  const pp = pattern.split("/");
  const tp = targetPath.split("/");
  if (pp.length !== tp.length) return false;
  return pp.every((p, i) => new RegExp(`^${segmentRegex(p)}$`, "s").test(tp[i]));
}

/** Whether delegated `role` is trusted for `targetPath` (its paths or path_hash_prefixes). */
export function roleAppliesTo(role: DelegatedRole, targetPath: string): boolean {
  if (role.paths) return role.paths.some((p) => pathMatches(p, targetPath));
  if (role.path_hash_prefixes) {
    const digest = sha256Hex(encoder.encode(targetPath));
    return role.path_hash_prefixes.some((p) => digest.startsWith(p));
  }
  return false;
}
