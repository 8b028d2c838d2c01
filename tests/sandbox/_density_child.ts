/**
 * Child process of density_test.ts: instantiates COUNT modules (1 MiB memory
 * cap each) in one isolate, delivers one message to each, and prints JSON
 * with how many answered and how much address space the process grew by.
 */
import { validateModule } from "../../sandbox/validate.ts";
import { GuestInstance } from "../../sandbox/instance.ts";
import { parseManifest } from "../../sandbox/manifest.ts";

const count = Number(Deno.args[0]);
const vmKiB = () => Number(Deno.readTextFileSync("/proc/self/status").match(/VmSize:\s+(\d+)/)![1]);
const bytes = await Deno.readFile(
  new URL("../../examples/modules/relay-wat/module.wasm", import.meta.url),
);
const before = vmKiB();
const instances: GuestInstance[] = [];
for (let i = 0; i < count; i++) {
  const manifest = parseManifest({
    name: `m${i}`,
    version: "1.0.0",
    grants: { log: true, publish: ["uplink/#"] },
    limits: { memory_bytes: 1 << 20 },
  });
  instances.push(
    GuestInstance.create(await validateModule(bytes, manifest), { logSink: () => {} }),
  );
}
let answered = 0;
for (const inst of instances) {
  const out = inst.call(new TextEncoder().encode("t"), new TextEncoder().encode("x"));
  if (out.status === 0 && out.published.length === 1) answered++;
}
console.log(JSON.stringify({ answered, grewKiB: vmKiB() - before }));
