/**
 * A repository server for the update tests that misbehaves on request:
 * `edged repo serve`'s own handler (Range, ETags) behind a switch that can
 * send target files at a few hundred bytes per second, refuse them with an
 * HTTP status, send them with one byte changed, or let metadata requests
 * stall after their headers. The
 * switch is `mode`, changed by the test while the server runs.
 *
 * @module
 */
import { staticHandler } from "../../ota/mod.ts";

/** How the server behaves; tests change it while it runs. */
export interface RepoServerMode {
  /** Send target bodies at this many bytes per second (0: at full speed). */
  targetRate: number;
  /** Answer target requests with this status instead (e.g. 503). */
  targetStatus: number | null;
  /** Target bodies arrive with their first byte changed (a digest mismatch). */
  corruptTargets: boolean;
  /** Metadata answers send their headers and then nothing. */
  stallMetadata: boolean;
}

/** A running server. */
export interface RepoServer {
  /** Base URL (ends with "/"). */
  url: string;
  /** The behaviour, changeable at any time. */
  mode: RepoServerMode;
  /** Paths requested so far, with their Range header. */
  requests: { path: string; range: string | null }[];
  /** Ends every open answer and stops the server. */
  close(): Promise<void>;
}

/** Serves the repository directory `dir` on an ephemeral loopback port. */
export function serveRepo(dir: string, mode: Partial<RepoServerMode> = {}): RepoServer {
  const files = staticHandler(dir);
  const open = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const state: RepoServerMode = {
    targetRate: 0,
    targetStatus: null,
    corruptTargets: false,
    stallMetadata: false,
    ...mode,
  };
  const requests: RepoServer["requests"] = [];
  /** A stream that ends only when the server closes. */
  const silent = () =>
    new ReadableStream<Uint8Array>({
      start: (c) => void open.add(c),
      cancel: () => {},
    });
  /** `body` with its first byte changed. */
  const corrupted = (body: ReadableStream<Uint8Array>) => {
    let first = true;
    return body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, c) {
          if (first && chunk.length > 0) {
            chunk = chunk.slice();
            chunk[0] ^= 0xff;
            first = false;
          }
          c.enqueue(chunk);
        },
      }),
    );
  };
  /** `body` re-sent in slices of a tenth of `rate`, one every 100 ms. */
  const throttled = (body: ReadableStream<Uint8Array>, rate: number) => {
    const reader = body.getReader();
    const slice = Math.max(1, Math.round(rate / 10));
    let pending: Uint8Array = new Uint8Array(0);
    let self: ReadableStreamDefaultController<Uint8Array>;
    return new ReadableStream<Uint8Array>({
      start: (c) => void open.add(self = c),
      async pull(c) {
        if (pending.length === 0) {
          const { done, value } = await reader.read();
          if (done) {
            open.delete(self);
            c.close();
            return;
          }
          pending = value;
        }
        await new Promise((r) => setTimeout(r, 100));
        c.enqueue(pending.slice(0, slice));
        pending = pending.subarray(slice);
      },
      cancel: () => {
        open.delete(self);
        return reader.cancel();
      },
    }, { highWaterMark: 0 });
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    requests.push({ path, range: req.headers.get("range") });
    if (path.startsWith("/metadata/") && state.stallMetadata) {
      return new Response(silent(), { headers: { "content-type": "application/json" } });
    }
    if (path.startsWith("/targets/") && state.targetStatus !== null) {
      return new Response("unavailable", { status: state.targetStatus });
    }
    const res = await files(req);
    if (!path.startsWith("/targets/") || !res.body) return res;
    let body: ReadableStream<Uint8Array> = res.body;
    if (state.corruptTargets) body = corrupted(body);
    if (state.targetRate > 0) body = throttled(body, state.targetRate);
    return body === res.body
      ? res
      : new Response(body, { status: res.status, headers: res.headers });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    mode: state,
    requests,
    async close() {
      for (const c of open) {
        try {
          c.error(new Error("server closed"));
        } catch { /* already closed */ }
      }
      open.clear();
      await server.shutdown();
    },
  };
}
