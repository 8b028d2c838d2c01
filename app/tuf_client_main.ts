/** Stand-alone entry of `edged tuf-client` (faster start for the conformance suite than main.ts). */
import { tufClientCommand } from "./commands/tuf_client.ts";
import { parseCommandLine } from "./parse.ts";

if (import.meta.main) {
  Deno.exit(await parseCommandLine(tufClientCommand().name("edged-tuf-client"), Deno.args));
}
