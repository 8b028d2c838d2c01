/**
 * The edged executable: `deno run main.ts …` and the entry `deno compile`
 * builds. Everything lives in `app/`.
 *
 * @module
 */
// app/main.ts, not app/mod.ts: the entry loads only what the command line needs.
import { main } from "./app/main.ts";

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
