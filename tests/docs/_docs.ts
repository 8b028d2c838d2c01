/**
 * Helpers of the documentation tests: the shell blocks the docs mark with
 * `<!-- doc-test: NAME -->`, run as a reader runs them (bash, in a copy of
 * the checkout, against a real `deno task dev`), so the docs cannot drift
 * from the code. The only change made to a block is its ports: the
 * documented ones (8080, 8081, 8090) become free ones.
 *
 * @module
 */
import { freePort } from "../_helpers/mosquitto.ts";

export { freePort };

/** The checkout. */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/**
 * The code of the fenced block after `<!-- doc-test: name -->` in `file`
 * (relative to the checkout), without the indentation of a list item.
 *
 * @throws {Error} when the marker or its block is missing.
 */
export async function snippet(file: string, name: string): Promise<string> {
  const lines = (await Deno.readTextFile(`${ROOT}${file}`)).split("\n");
  const at = lines.findIndex((l) => l.trim() === `<!-- doc-test: ${name} -->`);
  if (at < 0) throw new Error(`${file}: no <!-- doc-test: ${name} --> marker`);
  const open = lines.findIndex((l, i) => i > at && l.trim() !== "");
  const fence = /^(\s*)```/.exec(lines[open] ?? "");
  if (!fence) throw new Error(`${file}: the doc-test ${name} is not followed by a code block`);
  const indent = fence[1].length;
  const close = lines.findIndex((l, i) => i > open && l.trim() === "```");
  if (close < 0) throw new Error(`${file}: the block of doc-test ${name} is not closed`);
  return lines.slice(open + 1, close).map((l) =>
    l.slice(Math.min(indent, /^\s*/.exec(l)![0].length))
  )
    .join("\n") + "\n";
}

/** Replaces the documented ports in `code` (`8080` → `ports[8080]`, ...). */
export function withPorts(code: string, ports: Record<number, number>): string {
  let out = code;
  for (const [from, to] of Object.entries(ports)) {
    out = out.replace(new RegExp(`(?<=[:/])${from}\\b`, "g"), String(to));
  }
  return out;
}

/** Output of {@linkcode bash}. */
export interface BashResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The PATH for doc blocks: `deno` is the Deno running the tests. */
export function docPath(): string {
  const denoDir = Deno.execPath().replace(/\/[^/]*$/, "");
  return `${denoDir}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`;
}

/**
 * Runs `code` with `bash -eo pipefail` in `cwd`, in its own session (every
 * process it leaves behind is killed when it ends), within `timeoutMs`.
 */
export async function bash(
  code: string,
  o: { cwd: string; env?: Record<string, string>; timeoutMs?: number },
): Promise<BashResult> {
  // Absolute paths: the block's PATH may be one the test made.
  const child = new Deno.Command("/usr/bin/setsid", {
    args: ["/bin/bash", "-eo", "pipefail", "-c", code],
    cwd: o.cwd,
    env: { PATH: docPath(), NO_COLOR: "1", ...o.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => killGroup(child.pid), o.timeoutMs ?? 120_000);
  try {
    const out = await child.output();
    const d = new TextDecoder();
    return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
    killGroup(child.pid);
  }
}

function killGroup(pid: number): void {
  try {
    Deno.kill(-pid, "SIGKILL");
  } catch {
    // the group is gone
  }
}

/**
 * A copy of the checkout's files (tracked and new, as `git ls-files` sees
 * them: no data/, node_modules/ or dist/) in a new temporary directory.
 */
export async function copyCheckout(): Promise<string> {
  const list = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  if (!list.success) throw new Error("git ls-files failed: the docs tests need a git checkout");
  const dir = await Deno.makeTempDir({ prefix: "edged-docs-" });
  for (const f of new TextDecoder().decode(list.stdout).split("\0").filter(Boolean)) {
    const stat = await Deno.lstat(`${ROOT}${f}`).catch(() => null);
    if (!stat?.isFile) continue; // deleted in the working tree
    await Deno.mkdir(`${dir}/${f}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.copyFile(`${ROOT}${f}`, `${dir}/${f}`);
  }
  return dir;
}

/** `deno task dev` running in a copy of the checkout. */
export interface DevServer {
  dir: string;
  port: number;
  /** Everything it printed so far. */
  output(): string;
  /** Stops it (SIGTERM to its session, then SIGKILL) and removes the copy. */
  stop(): Promise<void>;
}

/** Starts `deno task dev` in `dir` on a free port; resolves once `/readyz` answers 200. */
export async function startDev(dir: string): Promise<DevServer> {
  const port = freePort();
  const child = new Deno.Command("setsid", {
    args: [Deno.execPath(), "task", "dev"],
    cwd: dir,
    env: { EDGED_LISTEN: `127.0.0.1:${port}`, NO_COLOR: "1", PATH: docPath() },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const pump = async (r: ReadableStream<Uint8Array>) => {
    for await (const chunk of r.pipeThrough(new TextDecoderStream())) text += chunk;
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const stop = async () => {
    try {
      Deno.kill(-child.pid, "SIGTERM");
    } catch {
      // gone
    }
    const timer = setTimeout(() => killGroup(child.pid), 10_000);
    await child.status;
    clearTimeout(timer);
    killGroup(child.pid);
    await pumps.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  };
  const deadline = Date.now() + 60_000;
  while (true) {
    const status = await fetch(`http://127.0.0.1:${port}/readyz`).then(async (r) => {
      await r.body?.cancel();
      return r.status;
    }, () => 0);
    if (status === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`deno task dev: /readyz not 200 within 60 s\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { dir, port, output: () => text, stop };
}

/** One terminal session: the blocks in order, each one's stdout by name. */
export interface Session extends BashResult {
  /** What each block printed (absent: it did not run). */
  out: Record<string, string>;
}

/**
 * Runs the named blocks of `file` one after the other in one bash, as a
 * reader types them into one terminal (variables carry over).
 */
export async function session(
  file: string,
  names: string[],
  o: {
    cwd: string;
    ports: Record<number, number>;
    env?: Record<string, string>;
    timeoutMs?: number;
  },
): Promise<Session> {
  const marker = (n: string) => `@@doc-test ${n}@@`;
  let code = "";
  for (const n of names) {
    // A newline first: curl's answers end without one.
    code += `printf '\\n${marker(n)}\\n'\n${withPorts(await snippet(file, n), o.ports)}`;
  }
  const r = await bash(code, o);
  const out: Record<string, string> = {};
  const parts = r.stdout.split(/^@@doc-test (\S+)@@\n/m);
  for (let i = 1; i < parts.length; i += 2) out[parts[i]] = parts[i + 1];
  return { ...r, out };
}
