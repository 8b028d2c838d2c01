// Worker entry in plain JavaScript: the worker's TypeScript is loaded by a
// computed dynamic import, so `deno test` does not type-check the whole
// graph again for every worker (the test module's own check covers it).
const impl = new URL("./_worker.ts", import.meta.url).href;
await import(impl);
