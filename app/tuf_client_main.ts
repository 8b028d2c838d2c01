/** Stand-alone entry of `edged tuf-client` (faster start for the conformance suite than main.ts). */
import { tufClientCommand } from "./commands/tuf_client.ts";

if (import.meta.main) {
  await tufClientCommand().name("edged-tuf-client").parseAsync(Deno.args, { from: "user" });
}
