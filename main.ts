/**
 * The edged executable: `deno run main.ts …` and the entry `deno compile`
 * builds. Everything lives in `app/`.
 *
 * @module
 */
import { main } from "./app/mod.ts";

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
