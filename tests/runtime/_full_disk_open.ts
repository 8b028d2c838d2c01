/**
 * Run by store_test.ts inside a mount namespace where `Deno.args[0]` is a
 * 1 MiB tmpfs: makes a store, closes it, fills the disk, opens the store
 * again and prints what that threw.
 */
import { Store } from "../../runtime/mod.ts";
import { fillDisk } from "../_helpers/fill_disk.ts";

const dir = `${Deno.args[0]}/data`;
Deno.mkdirSync(dir);
Store.open(dir).close();
fillDisk(Deno.args[0]);
try {
  Store.open(dir).close();
  console.log("opened");
} catch (err) {
  console.log((err as Error).message);
}
