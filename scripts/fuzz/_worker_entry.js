// Worker entry in plain JavaScript: the worker's TypeScript is loaded by a
// computed dynamic import, so `deno test` does not type-check the whole
// graph again for every worker (the test module's own check covers it).
//
// The runner posts the job right after creating the worker. While the import
// below is still loading (slow on a fresh checkout), that message would be
// dispatched with no handler and lost, and the worker would wait forever; so
// messages are held here until _worker.ts has installed its own handler.
const held = [];
self.onmessage = (ev) => held.push(ev);
const impl = new URL("./_worker.ts", import.meta.url).href;
await import(impl);
for (const ev of held) self.onmessage(ev);
