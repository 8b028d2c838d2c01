/**
 * Helpers shared by the parts of the `sandbox` benchmark section: WAT built
 * with wabt, percentiles, shell commands, manifests.
 *
 * @module
 */

import { parseManifest } from "../../sandbox/manifest.ts";

/** The `p`th percentile (0-100) of `xs`. */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** Runs `cmd` and returns its stdout; throws with its stderr when it fails. */
export async function sh(cmd: string, args: string[], cwd?: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** A manifest granting log, publish to everything and the clock, with `over` on top. */
export function manifestFor(name: string, over: Record<string, unknown> = {}) {
  return parseManifest({
    name,
    version: "1.0.0",
    grants: { log: true, publish: ["#"], clock: true },
    ...over,
  });
}

/** Compiles WAT `source` with wabt's wat2wasm (every feature on) into `dir/name.wasm`. */
export async function wat2wasm(dir: string, name: string, source: string): Promise<Uint8Array> {
  await Deno.writeTextFile(`${dir}/${name}.wat`, source);
  await sh("wat2wasm", ["--enable-all", `${dir}/${name}.wat`, "-o", `${dir}/${name}.wasm`]);
  return Deno.readFile(`${dir}/${name}.wasm`);
}
