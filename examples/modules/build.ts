/**
 * Builds every example module (each folder's build.sh) and writes the digest
 * of the result into its manifest.json as "sha256".
 *
 * Run: deno run --allow-read --allow-write --allow-run examples/modules/build.ts
 *
 * @module
 */

import { sha256Hex } from "../../lib/mod.ts";
import { Command, parseCli } from "../../scripts/_cli.ts";

const here = new URL(".", import.meta.url).pathname;
const stop = parseCli(
  new Command("build.ts").description(
    "Rebuild every example module with its build.sh and write each digest into its manifest.json.",
  ),
  Deno.args,
);
if (stop !== null) Deno.exit(stop);

for (const entry of [...Deno.readDirSync(here)].sort((a, b) => a.name.localeCompare(b.name))) {
  if (!entry.isDirectory || entry.name === "node_modules") continue;
  const dir = `${here}${entry.name}`;
  try {
    Deno.statSync(`${dir}/build.sh`);
  } catch {
    continue;
  }
  const build = await new Deno.Command("sh", { args: [`${dir}/build.sh`] }).output();
  if (!build.success) {
    console.error(new TextDecoder().decode(build.stderr));
    throw new Error(`${entry.name}: build.sh failed with exit code ${build.code}`);
  }
  const wasm = await Deno.readFile(`${dir}/module.wasm`);
  const sha256 = await sha256Hex(wasm);
  const manifestPath = `${dir}/manifest.json`;
  const manifest = JSON.parse(await Deno.readTextFile(manifestPath));
  const { name, version, ...rest } = manifest;
  delete rest.sha256;
  const next = { name, version, sha256, ...rest };
  await Deno.writeTextFile(manifestPath, JSON.stringify(next, null, 2) + "\n");
  console.log(`${entry.name}: ${wasm.length} bytes, sha256 ${sha256}`);
}
