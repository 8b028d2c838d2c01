/**
 * The load-time checks of a module against its manifest (docs/modules.md,
 * "The ABI (v1)"): digest, structure, imports against grants, ABI exports, memory and
 * table declarations; then instrumentation and compilation. The runtime and
 * `edged module validate` both call {@link validateModule}.
 *
 * @module
 */

import { sha256Hex } from "../lib/mod.ts";
import { formatFuncType, type FuncType, type ModuleInfo, parseModule } from "./wasm/parse.ts";
import {
  FUEL_CHARGE_EXPORT,
  FUEL_GET_EXPORT,
  FUEL_SET_EXPORT,
  instrumentThen,
} from "./wasm/instrument.ts";
import { WasmFormatError } from "./wasm/reader.ts";
import { ModuleValidationError } from "./errors.ts";
import type { Manifest } from "./manifest.ts";
import { EDGE_SIGNATURES, grantFor } from "./host/edge.ts";
import { WASI_MODULE, WASI_SIGNATURES } from "./host/wasi.ts";
import { NN_MODULE, NN_SIGNATURES } from "./nn/abi.ts";

/** Modules up to this size (after instrumentation) are compiled synchronously. */
const SYNC_COMPILE_BYTES = 256 * 1024;

/** Entries any table may declare or grow to. */
export const DEFAULT_TABLE_MAX_ENTRIES = 100_000;
/**
 * Tables a module may declare: each may grow to the entry limit, and every
 * instance holds its own (8 bytes an entry), so their number bounds what an
 * instance can make the Worker hold beside its memory: 16 × 100,000 entries,
 * about 13 MB. Compilers emit one table, or a few with reference types.
 */
export const MAX_TABLES = 16;
/**
 * Function types and functions a module may define. Compilers emit a few
 * hundred types and up to tens of thousands of functions for a large program;
 * V8 keeps per-module structures for each (a module of 400,000 types held
 * about 300 MB in edged), which `limits.memory_bytes` does not count.
 */
export const MAX_TYPES = 10_000;
export const MAX_FUNCTIONS = 100_000;

/** Options for {@link validateModule}. */
export interface ValidateOptions {
  /** Insert fuel metering (switch off only to measure its cost). @default true */
  meter?: boolean;
  /** Table size ceiling. @default 100000 */
  tableMaxEntries?: number;
}

/** A module that passed every check, ready to instantiate. */
export interface ValidatedModule {
  manifest: Manifest;
  /** Lowercase hex SHA-256 of the original bytes. */
  sha256: string;
  /** Size of the original bytes. */
  size: number;
  /**
   * The module's parsed structure, where it was validated on this thread (the
   * validator Worker keeps it: for a large module it is millions of objects).
   */
  info?: ModuleInfo;
  /** The instrumented, compiled module. */
  module: WebAssembly.Module;
  /** Whether the module exports the start function as `__edged_start`. */
  metered: boolean;
}

const I32 = "i32" as const;
/** Exports of ABI v1 and their types; `optional` ones may be absent. */
const ABI_EXPORTS: { name: string; type: FuncType; optional: boolean }[] = [
  { name: "edge_alloc", type: { params: [I32], results: [I32] }, optional: false },
  {
    name: "edge_on_message",
    type: { params: [I32, I32, I32, I32], results: [I32] },
    optional: false,
  },
  { name: "edge_init", type: { params: [], results: [I32] }, optional: true },
  { name: "_initialize", type: { params: [], results: [] }, optional: true },
];

const sameType = (a: FuncType, b: FuncType) =>
  a.params.length === b.params.length && a.results.length === b.results.length &&
  a.params.every((p, i) => p === b.params[i]) && a.results.every((p, i) => p === b.results[i]);

/** Plurals of the import kinds that are refused. */
const IMPORT_KINDS: Record<string, string> = {
  memory: "memories",
  table: "tables",
  global: "globals",
  tag: "tags",
};

/** Every reason the imports break the manifest's grants (empty when fine). */
export function checkImports(info: ModuleInfo, manifest: Manifest): string[] {
  const reasons: string[] = [];
  for (const imp of info.imports) {
    const what = `import ${imp.module}.${imp.name}`;
    if (imp.kind !== "func") {
      reasons.push(
        `${what}: imported ${
          IMPORT_KINDS[imp.kind] ?? imp.kind
        } are not allowed (a module defines its own; only functions are imported)`,
      );
      continue;
    }
    let expected: FuncType | undefined;
    if (imp.module === "edge") {
      expected = EDGE_SIGNATURES[imp.name];
      if (!expected) {
        reasons.push(
          `${what}: unknown host function (edge offers ${Object.keys(EDGE_SIGNATURES).join(", ")})`,
        );
        continue;
      }
      const grant = grantFor(imp.name);
      if (!grant.granted(manifest)) {
        reasons.push(`${what}: not granted by the manifest (needs grants.${grant.key})`);
        continue;
      }
    } else if (imp.module === WASI_MODULE) {
      expected = WASI_SIGNATURES[imp.name];
      if (!expected) {
        reasons.push(`${what}: unknown WASI preview 1 function`);
        continue;
      }
      if (!manifest.grants.wasi) {
        reasons.push(`${what}: not granted by the manifest (needs grants.wasi)`);
        continue;
      }
    } else if (imp.module === NN_MODULE) {
      expected = NN_SIGNATURES[imp.name];
      if (!expected) {
        reasons.push(
          `${what}: unknown WASI-NN function (${Object.keys(NN_SIGNATURES).join(", ")})`,
        );
        continue;
      }
      if (manifest.grants.nn.length === 0) {
        reasons.push(
          `${what}: not granted by the manifest (needs grants.nn, the models it may use)`,
        );
        continue;
      }
    } else {
      reasons.push(
        `${what}: unknown import module "${imp.module}" (only "edge", "${WASI_MODULE}" and "${NN_MODULE}")`,
      );
      continue;
    }
    if (!sameType(imp.type!, expected)) {
      reasons.push(
        `${what}: has type ${formatFuncType(imp.type!)}, expected ${formatFuncType(expected)}`,
      );
    }
  }
  return reasons;
}

/** Every reason the exports break ABI v1 (empty when fine). */
export function checkExports(info: ModuleInfo): string[] {
  const reasons: string[] = [];
  const byName = new Map(info.exports.map((e) => [e.name, e]));
  const mem = byName.get("memory");
  if (!mem || mem.kind !== "memory") {
    reasons.push("export memory: missing (ABI v1 requires an exported memory)");
  }
  for (const abi of ABI_EXPORTS) {
    const e = byName.get(abi.name);
    if (!e) {
      if (!abi.optional) reasons.push(`export ${abi.name}: missing (ABI v1 requires it)`);
      continue;
    }
    const t = e.kind === "func" ? info.functionTypes[e.index] : undefined;
    if (!t) reasons.push(`export ${abi.name}: must be a function`);
    else if (!sameType(t, abi.type)) {
      reasons.push(
        `export ${abi.name}: has type ${formatFuncType(t)}, expected ${formatFuncType(abi.type)}`,
      );
    }
  }
  for (const e of info.exports) {
    if (e.name.startsWith("__edged")) {
      reasons.push(`export ${e.name}: names starting with __edged are reserved`);
    }
  }
  return reasons;
}

/** Every reason memory and tables break the limits (empty when fine). */
export function checkLimits(
  info: ModuleInfo,
  manifest: Manifest,
  tableMaxEntries: number,
): string[] {
  const reasons: string[] = [];
  const capPages = Math.floor(manifest.limits.memory_bytes / 65536);
  if (info.memories.length === 0 && !info.imports.some((i) => i.kind === "memory")) {
    reasons.push("memory: the module defines no memory");
  }
  if (info.memories.length > 1) {
    reasons.push(`memory: ${info.memories.length} memories declared, at most 1 allowed`);
  }
  for (const m of info.memories) {
    if (m.memory64) reasons.push("memory: 64-bit memories are not supported");
    if (m.shared) reasons.push("memory: shared memories are not supported");
    if (m.min > capPages) {
      reasons.push(
        `memory: declared minimum ${m.min} pages (${
          m.min * 65536
        } bytes) exceeds limits.memory_bytes ` +
          `${manifest.limits.memory_bytes} (${capPages} pages)`,
      );
    }
  }
  if (info.types.length > MAX_TYPES) {
    reasons.push(`types: ${info.types.length} function types, at most ${MAX_TYPES} allowed`);
  }
  const functions = info.functionTypes.length - info.importedFuncCount;
  if (functions > MAX_FUNCTIONS) {
    reasons.push(`functions: ${functions} functions defined, at most ${MAX_FUNCTIONS} allowed`);
  }
  if (info.tables.length > MAX_TABLES) {
    reasons.push(`tables: ${info.tables.length} tables declared, at most ${MAX_TABLES} allowed`);
  }
  let entries = 0;
  info.tables.forEach((t, i) => {
    entries += t.min;
    if (t.min > tableMaxEntries) {
      reasons.push(
        `table ${i}: declared minimum ${t.min} entries exceeds the limit of ${tableMaxEntries}`,
      );
    }
  });
  if (entries > tableMaxEntries && info.tables.every((t) => t.min <= tableMaxEntries)) {
    reasons.push(
      `tables: declared minimums add up to ${entries} entries, more than the limit of ${tableMaxEntries}`,
    );
  }
  return reasons;
}

/**
 * The reasons `bytes` is refused that hold whatever its manifest says: empty,
 * malformed, or breaking ABI v1's exports. Listed beside a manifest's own
 * reasons when the manifest is refused, so one attempt shows every problem
 * that can be known.
 */
export function moduleOnlyReasons(bytes: Uint8Array): string[] {
  if (bytes.length === 0) return ["module is empty (0 bytes)"];
  try {
    return checkExports(parseModule(bytes));
  } catch (cause) {
    if (!(cause instanceof WasmFormatError)) throw cause;
    return [`malformed module: ${cause.message}`];
  }
}

/**
 * Runs every load-time check and returns the instrumented, compiled module.
 *
 * The digest is computed by WebCrypto on Deno's thread pool while this thread
 * parses, meters and compiles, and awaited last: its round trip (0.1 ms idle,
 * 4-7 ms at p99 on a busy machine) then overlaps the work instead of adding to
 * it. A module whose digest does not match is refused with the same reasons as
 * if it had been checked first; work done on it meanwhile is discarded.
 * @throws {ModuleValidationError} with every reason the module is refused.
 */
export async function validateModule(
  bytes: Uint8Array,
  manifest: Manifest,
  options: ValidateOptions = {},
): Promise<ValidatedModule> {
  if (bytes.length === 0) throw new ModuleValidationError(["module is empty (0 bytes)"]);
  const digest = sha256Hex(bytes);
  // Settled below in every path; until then a rejection is not "unhandled".
  digest.catch(() => {});
  let checked: Checked | ModuleValidationError;
  try {
    const c = checkAndCompile(bytes, manifest, options);
    checked = c instanceof Promise ? await c : c;
  } catch (err) {
    if (!(err instanceof ModuleValidationError)) throw err;
    checked = err;
  }
  const sha256 = await digest;
  if (manifest.sha256 && manifest.sha256 !== sha256) {
    const reason = `sha256: manifest says ${manifest.sha256}, the module's digest is ${sha256}`;
    // As when the digest was checked first: structural reasons are listed after it,
    // and instrumenting and compiling were never reached.
    const structural = checked instanceof StagedError && checked.stage === "structure"
      ? checked.reasons
      : [];
    throw new ModuleValidationError([reason, ...structural], { cause: checked });
  }
  if (checked instanceof ModuleValidationError) throw checked;
  const { info, module } = checked;
  return { manifest, sha256, size: bytes.length, info, module, metered: options.meter ?? true };
}

interface Checked {
  info: ModuleInfo;
  module: WebAssembly.Module;
}

/** A refusal and the stage that found it. */
class StagedError extends ModuleValidationError {
  constructor(readonly stage: "structure" | "compile", reasons: string[], options?: ErrorOptions) {
    super(reasons, options);
  }
}

/** Every check but the digest, then instrumentation and compilation. */
function checkAndCompile(
  bytes: Uint8Array,
  manifest: Manifest,
  options: ValidateOptions,
): Checked | Promise<Checked> {
  const { meter = true, tableMaxEntries = DEFAULT_TABLE_MAX_ENTRIES } = options;
  let info: ModuleInfo;
  try {
    info = parseModule(bytes);
  } catch (cause) {
    if (!(cause instanceof WasmFormatError)) throw cause;
    throw new StagedError("structure", [`malformed module: ${cause.message}`], { cause });
  }
  const reasons = [
    ...checkImports(info, manifest),
    ...checkExports(info),
    ...checkLimits(info, manifest, tableMaxEntries),
  ];
  if (reasons.length > 0) throw new StagedError("structure", reasons);

  const invalid = (cause: unknown) =>
    new StagedError("compile", [`invalid module: ${(cause as Error).message}`], { cause });
  const compile = (wasm: Uint8Array): Checked | Promise<Checked> => {
    // Small modules compile faster synchronously (~0.5 ms for 100 KB, half the async
    // round trip); large ones compile off the main thread, from a copy (`wasm` is a
    // view into the rewriter's reused buffer).
    if (wasm.length > SYNC_COMPILE_BYTES) {
      return WebAssembly.compile(wasm.slice() as Uint8Array<ArrayBuffer>).then(
        (module) => ({ info, module }),
        (cause) => {
          throw invalid(cause);
        },
      );
    }
    try {
      return { info, module: new WebAssembly.Module(wasm as Uint8Array<ArrayBuffer>) };
    } catch (cause) {
      throw invalid(cause);
    }
  };
  try {
    return instrumentThen(bytes, info, {
      memoryMaxPages: Math.floor(manifest.limits.memory_bytes / 65536),
      tableMaxEntries,
      meter,
      exportStartAs: meter ? START_EXPORT : undefined,
    }, compile);
  } catch (cause) {
    if (!(cause instanceof WasmFormatError)) throw cause;
    throw new StagedError("compile", [`malformed module: ${cause.message}`], { cause });
  }
}

/** Export name under which the rewriter exposes the module's start function. */
export const START_EXPORT = "__edged_start";
export { FUEL_CHARGE_EXPORT, FUEL_GET_EXPORT, FUEL_SET_EXPORT };
