/**
 * Run by store_test.ts inside a mount namespace where `Deno.args[0]` is a
 * 1 MiB tmpfs: makes a store, closes it, fills the disk, opens the store
 * again and prints what that threw.
 */
import { Store } from "../../runtime/mod.ts";

const dir = `${Deno.args[0]}/data`;
Deno.mkdirSync(dir);
Store.open(dir).close();
using f = Deno.openSync(`${Deno.args[0]}/filler`, { create: true, write: true });
for (const size of [1 << 16, 1 << 12, 512]) {
  const chunk = new Uint8Array(size);
  try {
    while (true) f.writeSync(chunk);
  } catch { /* full */ }
}
try {
  Store.open(dir).close();
  console.log("opened");
} catch (err) {
  console.log((err as Error).message);
}
