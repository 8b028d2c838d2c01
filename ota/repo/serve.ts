/**
 * A static file server for a repository directory (`edged repo serve`):
 * GET and HEAD with single byte ranges (RFC 9110 section 14: 206, 416),
 * strong ETags and conditional requests (If-None-Match → 304, If-Range).
 * Enough for small setups and tests; large fleets put the same files on a
 * CDN or object store.
 *
 * @module
 */
import { getLogger } from "../../lib/mod.ts";
import { join, normalize, resolve, sep } from "node:path";

const log = getLogger(["edged", "repo", "serve"]);

/** Options of {@link staticHandler}. */
export interface StaticHandlerOptions {
  /** Called per request after the answer is chosen (for logs and tests). */
  onRequest?: (req: Request, status: number) => void;
}

/** The ETag of a file: size and modification time, so it changes whenever the file does. */
function etagOf(info: Deno.FileInfo): string {
  return `"${info.size.toString(16)}-${(info.mtime?.getTime() ?? 0).toString(16)}"`;
}

/** RFC 9110 13.1.2: If-None-Match uses the weak comparison; "*" matches any current file. */
function noneMatch(header: string, etag: string): boolean {
  if (header.trim() === "*") return true;
  const strip = (t: string) => t.trim().replace(/^W\//, "");
  return header.split(",").some((t) => strip(t) === strip(etag));
}

/**
 * Parses a Range header against a file of `size` bytes. Returns the
 * inclusive range, "unsatisfiable", or undefined to ignore the header
 * (not bytes, several ranges, or malformed: RFC 9110 14.2 allows serving
 * the whole file then).
 */
function parseRange(header: string, size: number): [number, number] | "unsatisfiable" | undefined {
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== "" && Number(m[2]) < start) return undefined;
  if (start >= size) return "unsatisfiable";
  return [start, end];
}

function contentType(path: string): string {
  return path.endsWith(".json") ? "application/json" : "application/octet-stream";
}

/**
 * Cache policy: versioned metadata (`N.role.json`) and hash-prefixed
 * targets never change, so caches may keep them; `timestamp.json` and the
 * other unversioned files must be revalidated.
 */
function cacheControl(path: string): string {
  const name = path.slice(path.lastIndexOf("/") + 1);
  if (/^\d+\.[^/]+\.json$/.test(name) || /^[0-9a-f]{64}\./.test(name)) {
    return "public, max-age=31536000, immutable";
  }
  return "no-cache";
}

function rangeStream(file: Deno.FsFile, start: number, length: number): ReadableStream<Uint8Array> {
  let left = length;
  let positioned = false;
  return new ReadableStream({
    async pull(ctrl) {
      try {
        if (!positioned) {
          await file.seek(start, Deno.SeekMode.Start);
          positioned = true;
        }
        if (left === 0) {
          file.close();
          ctrl.close();
          return;
        }
        const buf = new Uint8Array(Math.min(left, 1 << 16));
        const n = await file.read(buf);
        if (n === null) {
          file.close();
          ctrl.close();
          return;
        }
        left -= n;
        ctrl.enqueue(buf.subarray(0, n));
      } catch (err) {
        file.close();
        ctrl.error(err);
      }
    },
    cancel() {
      file.close();
    },
  }, { highWaterMark: 0 });
}

/** Creates a `fetch`-style handler serving the files under `root`. */
export function staticHandler(
  root: string,
  options: StaticHandlerOptions = {},
): (req: Request) => Promise<Response> {
  const base = resolve(root);
  const answer = (req: Request, res: Response) => {
    options.onRequest?.(req, res.status);
    return res;
  };
  return async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return answer(
        req,
        new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } }),
      );
    }
    let rel: string;
    try {
      rel = decodeURIComponent(new URL(req.url).pathname);
    } catch {
      return answer(req, new Response("bad path\n", { status: 400 }));
    }
    const path = normalize(join(base, rel));
    // Never serve outside the root, dot files (lock, partial downloads), nor key files.
    if (
      (path !== base && !path.startsWith(base + sep)) || rel.includes("\0") ||
      rel.split("/").some((seg) => seg.startsWith(".")) ||
      path.startsWith(join(base, "keys") + sep) || path === join(base, "keys")
    ) {
      return answer(req, new Response("not found\n", { status: 404 }));
    }
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch {
      return answer(req, new Response("not found\n", { status: 404 }));
    }
    if (!info.isFile) return answer(req, new Response("not found\n", { status: 404 }));
    const etag = etagOf(info);
    const headers = new Headers({
      "accept-ranges": "bytes",
      etag,
      "cache-control": cacheControl(path),
      "content-type": contentType(path),
    });
    if (info.mtime) headers.set("last-modified", info.mtime.toUTCString());
    const inm = req.headers.get("if-none-match");
    if (inm !== null && noneMatch(inm, etag)) {
      return answer(req, new Response(null, { status: 304, headers }));
    }
    const size = info.size;
    let range = req.headers.get("range") !== null
      ? parseRange(req.headers.get("range")!, size)
      : undefined;
    // If-Range (RFC 9110 13.1.5): only serve the range if the file is still the one the client has.
    const ifRange = req.headers.get("if-range");
    if (range !== undefined && ifRange !== null && ifRange.trim() !== etag) range = undefined;
    if (range === "unsatisfiable") {
      headers.set("content-range", `bytes */${size}`);
      return answer(req, new Response(null, { status: 416, headers }));
    }
    const [start, end] = range ?? [0, size - 1];
    const length = size === 0 ? 0 : end - start + 1;
    headers.set("content-length", String(length));
    if (range) headers.set("content-range", `bytes ${start}-${end}/${size}`);
    const status = range ? 206 : 200;
    if (req.method === "HEAD" || length === 0) {
      return answer(req, new Response(null, { status, headers }));
    }
    const file = await Deno.open(path, { read: true });
    return answer(req, new Response(rangeStream(file, start, length), { status, headers }));
  };
}

/** Options of {@link serveRepository}. */
export interface ServeOptions extends StaticHandlerOptions {
  hostname?: string;
  /** 0 picks a free port. @default 8090 */
  port?: number;
  signal?: AbortSignal;
  /** Called once listening, with the actual address. */
  onListen?: (addr: Deno.NetAddr) => void;
}

/**
 * Serves the repository directory `dir` over HTTP: only `/metadata/...`
 * and `/targets/...`, what clients need; keys, `repo.json` and anything
 * else in the directory answer 404.
 */
export function serveRepository(
  dir: string,
  options: ServeOptions = {},
): Deno.HttpServer<Deno.NetAddr> {
  const { hostname = "127.0.0.1", port = 8090, signal, onListen, ...rest } = options;
  const files = staticHandler(dir, rest);
  return Deno.serve({
    hostname,
    port,
    signal,
    onListen: (addr) => {
      log.info("serving {dir} on http://{host}:{port}/", {
        dir,
        host: addr.hostname,
        port: addr.port,
      });
      onListen?.(addr);
    },
  }, (req) => {
    const path = new URL(req.url).pathname;
    if (!path.startsWith("/metadata/") && !path.startsWith("/targets/")) {
      rest.onRequest?.(req, 404);
      return new Response("not found\n", { status: 404 });
    }
    return files(req);
  });
}
