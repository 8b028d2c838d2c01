/**
 * Target path patterns and metadata file names.
 *
 * @module
 */
import { sha256HexSync } from "./_bytes.ts";
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

/** One element of a shell-style pattern segment. */
type GlobToken =
  | { kind: "star" }
  | { kind: "any" }
  | { kind: "char"; c: string }
  | { kind: "set"; negate: boolean; ranges: [string, string][] };

/**
 * Parses one pattern segment the way Python's `fnmatch` reads it (the
 * reference implementation's matcher): `*`, `?`, `[seq]`, `[!seq]` with
 * ranges, a `]` first in a set taken literally, an unclosed `[` taken
 * literally, and a reversed range such as `z-a` matching nothing.
 */
function parseSegment(pattern: string): GlobToken[] {
  const p = Array.from(pattern);
  const out: GlobToken[] = [];
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === "*") {
      if (out.at(-1)?.kind !== "star") out.push({ kind: "star" });
    } else if (c === "?") out.push({ kind: "any" });
    else if (c === "[") {
      let j = i + 1;
      if (p[j] === "!") j++;
      if (p[j] === "]") j++;
      while (j < p.length && p[j] !== "]") j++;
      if (j >= p.length) {
        out.push({ kind: "char", c });
        continue;
      }
      let body = p.slice(i + 1, j);
      const negate = body[0] === "!";
      if (negate) body = body.slice(1);
      const ranges: [string, string][] = [];
      for (let k = 0; k < body.length; k++) {
        if (body[k + 1] === "-" && k + 2 < body.length) {
          ranges.push([body[k], body[k + 2]]);
          k += 2;
        } else ranges.push([body[k], body[k]]);
      }
      out.push({ kind: "set", negate, ranges });
      i = j;
    } else out.push({ kind: "char", c });
  }
  return out;
}

function matchOne(t: GlobToken, c: string): boolean {
  switch (t.kind) {
    case "any":
      return true;
    case "char":
      return t.c === c;
    case "set": {
      const cp = c.codePointAt(0)!;
      const hit = t.ranges.some(([lo, hi]) => lo.codePointAt(0)! <= cp && cp <= hi.codePointAt(0)!);
      return hit !== t.negate;
    }
    default:
      return false;
  }
}

/**
 * Whether `text` matches the parsed segment. Greedy with one backtrack
 * point (the last `*`), so the time is O(pattern × text) whatever the
 * pattern: a delegated role cannot stall a client with a pattern that makes
 * a backtracking RegExp explode (`*a*a*a...*b`).
 */
function matchSegment(tokens: GlobToken[], text: string): boolean {
  const s = Array.from(text);
  let ti = 0;
  let si = 0;
  let starTi = -1;
  let starSi = 0;
  while (si < s.length) {
    const t = tokens[ti];
    if (t && t.kind === "star") {
      starTi = ti++;
      starSi = si;
    } else if (t && matchOne(t, s[si])) {
      ti++;
      si++;
    } else if (starTi >= 0) {
      ti = starTi + 1;
      si = ++starSi;
    } else return false;
  }
  while (tokens[ti]?.kind === "star") ti++;
  return ti === tokens.length;
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
  return pp.every((p, i) => matchSegment(parseSegment(p), tp[i]));
}

/** Whether delegated `role` is trusted for `targetPath` (its paths or path_hash_prefixes). */
export function roleAppliesTo(role: DelegatedRole, targetPath: string): boolean {
  if (role.paths) return role.paths.some((p) => pathMatches(p, targetPath));
  if (role.path_hash_prefixes) {
    const digest = sha256HexSync(encoder.encode(targetPath));
    return role.path_hash_prefixes.some((p) => digest.startsWith(p));
  }
  return false;
}
