/**
 * Test helper: starts a real edged process (`deno run main.ts run`) on a free
 * loopback port with its own data directory, and stops it.
 *
 * @module
 */

import { sourceRunFlags } from "../../runtime/mod.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Path of main.ts. */
export const MAIN = `${ROOT}main.ts`;

/** The flags edged runs from source with (the same as `deno task dev`). */
export const RUN_FLAGS: readonly string[] = sourceRunFlags();

/**
 * What `deno run` gets after its flags to start edged: `main.ts`, or, when
 * `TEST_EDGED_BUNDLE` names a directory built by `deno task bundle`, that
 * bundle's `main.js` without any deno.json (every package is inside it), so
 * the suite can run against what `deno task compile` embeds.
 */
export function edgedEntry(bundle = Deno.env.get("TEST_EDGED_BUNDLE")): string[] {
  return bundle ? ["--no-config", `${bundle}/main.js`] : [MAIN];
}

/**
 * The environment every edged started here gets first: `deno run` checks for
 * a newer Deno in the background (an HTTPS request, its TLS roots and
 * resolver loaded for good, ~2 MiB of resident memory, and a futile DNS
 * lookup on a machine without internet), which a compiled edged never does.
 */
const DENO_ENV: Record<string, string> = { DENO_NO_UPDATE_CHECK: "1" };

/** A running edged process. */
export interface EdgedProcess {
  url: string;
  token: string;
  dataDir: string;
  child: Deno.ChildProcess;
  /** Every stdout line so far (JSON log lines). */
  lines: string[];
  /** `fetch` against the API with the bearer token. */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** Sends SIGTERM and waits; resolves with the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** Waits for the process to exit by itself. */
  exited: Promise<Deno.CommandStatus>;
}

/** Options for {@linkcode startEdged}. */
export interface StartOptions {
  dataDir?: string;
  env?: Record<string, string>;
  args?: string[];
  /** Milliseconds to wait for "listening". @default {20000} */
  timeoutMs?: number;
  /** Wait until /readyz answers 200. @default {true} */
  waitReady?: boolean;
  /** A command that runs deno, e.g. `["prlimit", "--nofile=256"]` (it must exec, keeping the pid). */
  wrapper?: readonly string[];
  /** Run edged from this bundle directory (`deno task bundle`) rather than from main.ts. */
  bundle?: string;
}

/** Runs `edged` with arbitrary arguments and collects its output. */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...RUN_FLAGS, ...edgedEntry(), ...args],
    env: { ...DENO_ENV, NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Starts edged and waits until it listens (and, by default, is ready). */
export async function startEdged(options: StartOptions = {}): Promise<EdgedProcess> {
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "edged-test-" });
  /** A start that failed leaves nothing behind: the caller never learns a directory made here. */
  const dropOwnDir = () =>
    options.dataDir === undefined
      ? Deno.remove(dataDir, { recursive: true }).catch(() => {})
      : Promise.resolve();
  const token = options.env?.EDGED_API_TOKEN ?? "test-token-0123456789abcdef";
  const [program, ...pre] = [...(options.wrapper ?? []), Deno.execPath()];
  const child = new Deno.Command(program, {
    args: [
      ...pre,
      "run",
      ...RUN_FLAGS,
      ...edgedEntry(options.bundle),
      "run",
      "--data-dir",
      dataDir,
      "--listen",
      "127.0.0.1:0",
      ...(options.args ?? []),
    ],
    env: { ...DENO_ENV, EDGED_API_TOKEN: token, EDGED_LOG_FORMAT: "json", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const { promise: urlPromise, resolve: resolveUrl } = Promise.withResolvers<string>();
  (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        try {
          const rec = JSON.parse(line);
          if (rec.properties?.url && String(rec.message).startsWith("listening")) {
            resolveUrl(rec.properties.url);
          }
        } catch { /* not JSON */ }
      }
    }
  })();
  const exited = child.status;
  const timeoutMs = options.timeoutMs ?? 20000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const url = await Promise.race([
    urlPromise,
    exited.then((s) => {
      throw new Error(`edged exited with ${s.code} before listening:\n${lines.join("\n")}`);
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`edged did not listen within ${timeoutMs} ms`)),
        timeoutMs,
      );
    }),
  ]).catch(async (err) => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await exited;
    await dropOwnDir();
    throw err;
  }).finally(() => clearTimeout(timer));
  const proc: EdgedProcess = {
    url,
    token,
    dataDir,
    child,
    lines,
    exited,
    api: (path, init = {}) => {
      const headers = new Headers(init.headers);
      if (!headers.has("authorization")) headers.set("authorization", `Bearer ${token}`);
      return fetch(url + path, { ...init, headers });
    },
    stop: async (signal: Deno.Signal = "SIGTERM") => {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
      return (await exited).code;
    },
  };
  if (options.waitReady ?? true) {
    const deadline = Date.now() + timeoutMs;
    try {
      while (true) {
        const res = await fetch(url + "/readyz");
        await res.body?.cancel();
        if (res.status === 200) break;
        if (Date.now() > deadline) throw new Error("edged did not become ready");
        await new Promise((r) => setTimeout(r, 50));
      }
    } catch (err) {
      // The caller never gets the process to stop: end it here.
      await proc.stop("SIGKILL");
      await dropOwnDir();
      throw err;
    }
  }
  return proc;
}

/** POSTs JSON readings. */
export function postJson(p: EdgedProcess, body: unknown, path = "/api/v1/data"): Promise<Response> {
  return p.api(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}
