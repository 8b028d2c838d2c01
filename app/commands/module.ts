/**
 * `edged module validate MODULE.wasm --manifest MANIFEST.json`: the load-time
 * checks of the runtime, from the command line. Exit 0 when the module would
 * load, 1 with every reason when not, 2 on usage errors.
 *
 * @module
 */

import { Command } from "commander";
import {
  manifestParser,
  moduleOnlyChecker,
  ModuleValidationError,
  moduleValidator,
} from "../../sandbox/mod.ts";
import { EXIT } from "../../lib/mod.ts";

/** Runs the checks and prints the verdict; returns the exit code. */
export async function runValidate(
  wasmPath: string,
  manifestPath: string,
  json = false,
): Promise<number> {
  let bytes: Uint8Array;
  let manifestText: string;
  try {
    bytes = await Deno.readFile(wasmPath);
    manifestText = await Deno.readTextFile(manifestPath);
  } catch (err) {
    console.error(`edged module validate: ${(err as Error).message}`);
    return EXIT.USAGE;
  }
  try {
    let manifest;
    try {
      manifest = (await manifestParser())(manifestText);
    } catch (err) {
      if (!(err instanceof ModuleValidationError)) throw err;
      // What is wrong with the module whatever its manifest says is listed too.
      throw new ModuleValidationError([...err.reasons, ...(await moduleOnlyChecker())(bytes)]);
    }
    const v = await (await moduleValidator())(bytes, manifest);
    const m = v.manifest;
    if (json) {
      console.log(JSON.stringify({ ok: true, name: m.name, version: m.version, sha256: v.sha256 }));
    } else console.log(`ok: ${m.name} ${m.version} (${v.size} bytes, sha256 ${v.sha256})`);
    return EXIT.OK;
  } catch (err) {
    if (!(err instanceof ModuleValidationError)) throw err;
    if (json) console.log(JSON.stringify({ ok: false, reasons: err.reasons }));
    else {
      console.error(`refused: ${wasmPath}`);
      for (const r of err.reasons) console.error(`  - ${r}`);
    }
    return EXIT.FAILURE;
  }
}

/** The `module` command group for the edged CLI. */
export function moduleCommand(): Command {
  const cmd = new Command("module").description("work with WebAssembly modules");
  cmd.command("validate")
    .description("check a module against its manifest as the runtime does at load time")
    .argument("<module>", "the .wasm file")
    .requiredOption("--manifest <file>", "the module's JSON manifest")
    .option("--json", "print the verdict as JSON")
    .action(async (wasm: string, opts: { manifest: string; json?: boolean }) => {
      const code = await runValidate(wasm, opts.manifest, opts.json);
      if (code !== 0) Deno.exit(code);
    });
  return cmd;
}
