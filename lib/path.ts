/**
 * POSIX paths without `node:path`: {@linkcode joinPath},
 * {@linkcode resolvePath}, {@linkcode parentDir} and
 * {@linkcode pathFromFileUrl}, as `node:path`'s `join`, `resolve`, `dirname`
 * and `node:url`'s `fileURLToPath` (their algorithms, from Node's
 * `lib/path.js`). Loading any `node:` module starts Deno's Node compatibility
 * layer, about 4.5 MiB of resident memory; edged loads it anyway (SQLite), but
 * its launcher (`edged run --supervise`), which idles beside it, loads no
 * other `node:` module, so the files it runs use these.
 *
 * @module
 */

/** `path` with `.` and `..` segments and repeated slashes resolved, as Node's normalizeString. */
function normalizeString(path: string, allowAboveRoot: boolean): string {
  let res = "";
  let lastSegmentLength = 0;
  let lastSlash = -1;
  let dots = 0;
  let code = 0;
  for (let i = 0; i <= path.length; ++i) {
    if (i < path.length) code = path.charCodeAt(i);
    else if (code === 47) break;
    else code = 47;
    if (code === 47) {
      if (lastSlash === i - 1 || dots === 1) {
        // an empty or `.` segment
      } else if (dots === 2) {
        if (
          res.length < 2 || lastSegmentLength !== 2 || !res.endsWith("..")
        ) {
          if (res.length > 2) {
            const lastSlashIndex = res.lastIndexOf("/");
            if (lastSlashIndex === -1) {
              res = "";
              lastSegmentLength = 0;
            } else {
              res = res.slice(0, lastSlashIndex);
              lastSegmentLength = res.length - 1 - res.lastIndexOf("/");
            }
            lastSlash = i;
            dots = 0;
            continue;
          } else if (res.length !== 0) {
            res = "";
            lastSegmentLength = 0;
            lastSlash = i;
            dots = 0;
            continue;
          }
        }
        if (allowAboveRoot) {
          res += res.length > 0 ? "/.." : "..";
          lastSegmentLength = 2;
        }
      } else {
        if (res.length > 0) res += `/${path.slice(lastSlash + 1, i)}`;
        else res = path.slice(lastSlash + 1, i);
        lastSegmentLength = i - lastSlash - 1;
      }
      lastSlash = i;
      dots = 0;
    } else if (code === 46 && dots !== -1) {
      ++dots;
    } else {
      dots = -1;
    }
  }
  return res;
}

/** `node:path`'s `join`: the parts joined with `/`, normalized. */
export function joinPath(...parts: string[]): string {
  const joined = parts.filter((p) => p.length > 0).join("/");
  if (joined.length === 0) return ".";
  const absolute = joined.startsWith("/");
  const trailing = joined.endsWith("/");
  let path = normalizeString(joined, !absolute);
  if (path.length === 0) {
    if (absolute) return "/";
    return trailing ? "./" : ".";
  }
  if (trailing) path += "/";
  return absolute ? `/${path}` : path;
}

/** `node:path`'s `resolve`: the absolute path the parts name, from the working directory. */
export function resolvePath(...parts: string[]): string {
  let resolved = "";
  let absolute = false;
  for (let i = parts.length - 1; i >= -1 && !absolute; i--) {
    const path = i >= 0 ? parts[i] : Deno.cwd();
    if (path.length === 0) continue;
    resolved = `${path}/${resolved}`;
    absolute = path.startsWith("/");
  }
  resolved = normalizeString(resolved, !absolute);
  if (absolute) return `/${resolved}`;
  return resolved.length > 0 ? resolved : ".";
}

/** `node:path`'s `dirname`: the directory part of `path`. */
export function parentDir(path: string): string {
  if (path.length === 0) return ".";
  const hasRoot = path.startsWith("/");
  let end = -1;
  let matchedSlash = true;
  for (let i = path.length - 1; i >= 1; --i) {
    if (path.charCodeAt(i) === 47) {
      if (!matchedSlash) {
        end = i;
        break;
      }
    } else {
      matchedSlash = false;
    }
  }
  if (end === -1) return hasRoot ? "/" : ".";
  if (hasRoot && end === 1) return "//";
  return path.slice(0, end);
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
