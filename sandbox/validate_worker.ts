/// <reference lib="deno.worker" />
/**
 * The validator Worker: started by {@link ValidatorWorker} (`validator.ts`)
 * with `deno.permissions: "none"`, it runs the load-time checks, the fuel
 * rewriter and the compiler on a module's bytes, so a large module (tens of
 * megabytes, hundreds of thousands of functions: seconds of parsing and
 * rewriting) holds this thread instead of the runtime's, whose HTTP server and
 * ingest go on meanwhile. The compiled module goes back as it is (V8 shares it
 * between threads).
 *
 * @module
 */
import { ModuleValidationError } from "./errors.ts";
import { moduleOnlyReasons, validateModule } from "./validate.ts";
import type { ToValidator } from "./validator.ts";

self.onmessage = async (e: MessageEvent<ToValidator>) => {
  const m = e.data;
  try {
    if (m.t === "module_only") {
      self.postMessage({ id: m.id, reasons: moduleOnlyReasons(m.bytes) });
      return;
    }
    const v = await validateModule(m.bytes, m.manifest, m.options);
    self.postMessage({
      id: m.id,
      // Not `info`: the runtime does not use it, and for a large module it is millions of objects.
      ok: { sha256: v.sha256, size: v.size, module: v.module, metered: v.metered },
    });
  } catch (err) {
    if (err instanceof ModuleValidationError) self.postMessage({ id: m.id, reasons: err.reasons });
    else self.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) });
  }
};
