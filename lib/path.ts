/**
 * POSIX paths without `node:path`: {@linkcode joinPath},
 * {@linkcode resolvePath}, {@linkcode parentDir} and
 * {@linkcode pathFromFileUrl} answer as `node:path`'s `join`, `resolve`,
 * `dirname` and `node:url`'s `fileURLToPath` do (tests/lib/path_test.ts
 * compares them over many odd paths). Loading any `node:` module starts
 * Deno's Node compatibility layer, about 4.5 MiB of resident memory; edged
 * loads it anyway (SQLite), but its launcher (`edged run --supervise`), which
 * idles beside it, loads no `node:` module, so the files it runs use these.
 *
 * @module
 */

/**
 * The segments of `path` with empty and `.` segments dropped and each `..`
 * taking the segment before it away; a `..` with nothing before it stays,
 * unless `absolute` (nothing is above the root).
 */
function segments(path: string, absolute: boolean): string[] {
  const out: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg !== "..") out.push(seg);
    else if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (!absolute) out.push("..");
  }
  return out;
}

/** `node:path`'s `join`: the parts joined with `/`, normalized (a trailing `/` kept). */
export function joinPath(...parts: string[]): string {
  const joined = parts.filter((p) => p.length > 0).join("/");
  if (joined.length === 0) return ".";
  const absolute = joined.startsWith("/");
  const trailing = joined.endsWith("/");
  const body = segments(joined, absolute).join("/");
  if (absolute) return body.length > 0 ? `/${body}${trailing ? "/" : ""}` : "/";
  if (body.length === 0) return trailing ? "./" : ".";
  return trailing ? `${body}/` : body;
}

/** `node:path`'s `resolve`: the absolute path the parts name, from the working directory. */
export function resolvePath(...parts: string[]): string {
  // The parts from the last absolute one on (the working directory first when none is).
  let from = parts.length;
  while (from > 0 && !parts[from - 1].startsWith("/")) from--;
  const rest = parts.slice(from > 0 ? from - 1 : 0).filter((p) => p.length > 0);
  const base = from > 0 ? [] : [Deno.cwd()];
  return `/${segments([...base, ...rest].join("/"), true).join("/")}`;
}

/**
 * `node:path`'s `dirname`: `path` up to the last `/` before its last segment
 * (trailing slashes are not a segment; the slashes before that one stay).
 */
export function parentDir(path: string): string {
  const absolute = path.startsWith("/");
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  const slash = path.lastIndexOf("/", end - 1);
  if (slash < 1) return absolute ? "/" : ".";
  // node:path keeps a leading "//" (POSIX leaves its meaning to the system).
  if (slash === 1 && absolute) return "//";
  return path.slice(0, slash);
}

/**
 * `node:url`'s `fileURLToPath` on POSIX: the path of a `file:` URL.
 * @throws {TypeError} for another scheme, a host, or an encoded `/`.
 */
export function pathFromFileUrl(url: string | URL): string {
  const u = new URL(url);
  if (u.protocol !== "file:") throw new TypeError(`not a file URL: ${u.href}`);
  if (u.hostname !== "") throw new TypeError(`a file URL with a host: ${u.href}`);
  if (/%2f/i.test(u.pathname)) throw new TypeError(`a file URL with an encoded /: ${u.href}`);
  return decodeURIComponent(u.pathname);
}
