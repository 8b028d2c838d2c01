/**
 * Parses the module-level structure of a WebAssembly binary (WebAssembly Core
 * Specification 2.0, section 5.5 "Modules"): types, imports, functions, tables,
 * memories, globals, exports, start and code bodies. Instruction sequences are
 * walked only far enough to find their ends; full validation is V8's job.
 *
 * @module
 */

import { Reader, WasmFormatError } from "./reader.ts";
import { skipConstExpr } from "./instructions.ts";

/** A value type byte (5.3.1 numtype/vectype/reftype). */
export type ValType = "i32" | "i64" | "f32" | "f64" | "v128" | "funcref" | "externref";

const VALTYPES: Record<number, ValType> = {
  0x7f: "i32",
  0x7e: "i64",
  0x7d: "f32",
  0x7c: "f64",
  0x7b: "v128",
  0x70: "funcref",
  0x6f: "externref",
};

/** A function type (5.3.6). */
export interface FuncType {
  params: ValType[];
  results: ValType[];
}

/** Limits (5.3.7); `max` is absent when unbounded. */
export interface Limits {
  min: number;
  max?: number;
  shared: boolean;
  memory64: boolean;
}

/** An import (5.5.5). */
export interface Import {
  module: string;
  name: string;
  kind: "func" | "table" | "memory" | "global" | "tag";
  /** Function type for `func` imports. */
  type?: FuncType;
}

/** An export (5.5.10). */
export interface Export {
  name: string;
  kind: "func" | "table" | "memory" | "global" | "tag";
  index: number;
}

/** A section's byte range: `start` is the id byte, `contentStart` the first content byte. */
export interface SectionRange {
  id: number;
  start: number;
  contentStart: number;
  end: number;
}

/** What the loader needs to know about a module. */
export interface ModuleInfo {
  types: FuncType[];
  imports: Import[];
  /** Type of every function, imported first (the function index space). */
  functionTypes: FuncType[];
  importedFuncCount: number;
  importedGlobalCount: number;
  definedGlobalCount: number;
  tables: Limits[];
  memories: Limits[];
  exports: Export[];
  start?: number;
  sections: SectionRange[];
}

const EXTERN_KINDS = ["func", "table", "memory", "global", "tag"] as const;

/** Canonical order of the non-custom sections (5.5.2, with tag 13 and datacount 12). */
export const SECTION_ORDER = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];

/** Reads a value type; GC reference types are refused as unsupported. */
export function readValType(r: Reader): ValType {
  const at = r.pos;
  const b = r.byte();
  const t = VALTYPES[b];
  if (!t) throw new WasmFormatError(`unsupported value type 0x${b.toString(16)}`, at);
  return t;
}

/** Reads limits (5.3.7) including the threads (shared) and memory64 flag bits. */
export function readLimits(r: Reader): Limits {
  const at = r.pos;
  const flags = r.byte();
  if (flags > 0x07) throw new WasmFormatError(`unknown limits flags 0x${flags.toString(16)}`, at);
  const memory64 = (flags & 0x04) !== 0;
  const toNum = (
    v: bigint,
  ) => (v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v));
  const min = memory64 ? toNum(r.u64()) : r.u32();
  const max = flags & 0x01 ? (memory64 ? toNum(r.u64()) : r.u32()) : undefined;
  return { min, max, shared: (flags & 0x02) !== 0, memory64 };
}

function readFuncType(r: Reader): FuncType {
  const at = r.pos;
  const form = r.byte();
  if (form !== 0x60) {
    throw new WasmFormatError(`unsupported type form 0x${form.toString(16)} (only func types)`, at);
  }
  const params = Array.from({ length: r.u32() }, () => readValType(r));
  const results = Array.from({ length: r.u32() }, () => readValType(r));
  return { params, results };
}

function readTableType(r: Reader): Limits {
  readValType(r);
  return readLimits(r);
}

/**
 * Parses `bytes` as a WebAssembly binary.
 * @throws {WasmFormatError} when the bytes are empty, truncated or malformed.
 */
export function parseModule(bytes: Uint8Array): ModuleInfo {
  if (bytes.length === 0) throw new WasmFormatError("module is empty (0 bytes)", 0);
  const r = new Reader(bytes);
  // 5.5.16: magic "\0asm" then version 1.
  if (bytes.length < 8) {
    throw new WasmFormatError(`module is truncated: ${bytes.length} bytes, header needs 8`, 0);
  }
  const magic = r.take(4);
  if (magic[0] !== 0 || magic[1] !== 0x61 || magic[2] !== 0x73 || magic[3] !== 0x6d) {
    throw new WasmFormatError("not a WebAssembly module: bad magic (expected \\0asm)", 0);
  }
  const version = r.take(4);
  if (version[0] !== 1 || version[1] !== 0 || version[2] !== 0 || version[3] !== 0) {
    throw new WasmFormatError("unsupported WebAssembly version (expected 1)", 4);
  }

  const info: ModuleInfo = {
    types: [],
    imports: [],
    functionTypes: [],
    importedFuncCount: 0,
    importedGlobalCount: 0,
    definedGlobalCount: 0,
    tables: [],
    memories: [],
    exports: [],
    sections: [],
  };
  let lastOrder = -1;
  let declaredFunctions = 0;
  let codeBodies = -1;

  while (!r.done) {
    const start = r.pos;
    const id = r.byte();
    const size = r.u32();
    const contentStart = r.pos;
    if (contentStart + size > bytes.length) {
      throw new WasmFormatError(
        `module is truncated: section ${id} declares ${size} bytes, ${
          bytes.length - contentStart
        } left`,
        start,
      );
    }
    const end = contentStart + size;
    info.sections.push({ id, start, contentStart, end });
    if (id !== 0) {
      const order = SECTION_ORDER.indexOf(id);
      if (order < 0) throw new WasmFormatError(`unknown section id ${id}`, start);
      if (order <= lastOrder) {
        throw new WasmFormatError(`section ${id} out of order or repeated`, start);
      }
      lastOrder = order;
    }
    const s = new Reader(bytes, contentStart, end);
    switch (id) {
      case 0:
        s.name();
        s.pos = end;
        break;
      case 1:
        for (let n = s.u32(); n > 0; n--) info.types.push(readFuncType(s));
        break;
      case 2:
        for (let n = s.u32(); n > 0; n--) {
          const module = s.name();
          const name = s.name();
          const kindAt = s.pos;
          const kind = EXTERN_KINDS[s.byte()];
          if (!kind) throw new WasmFormatError("unknown import kind", kindAt);
          const imp: Import = { module, name, kind };
          if (kind === "func") {
            imp.type = typeAt(info, s.u32(), s.pos);
            info.functionTypes.push(imp.type);
            info.importedFuncCount++;
          } else if (kind === "table") {
            readTableType(s);
          } else if (kind === "memory") {
            readLimits(s);
          } else if (kind === "global") {
            readValType(s);
            s.byte();
            info.importedGlobalCount++;
          } else {
            s.byte();
            s.u32();
          }
          info.imports.push(imp);
        }
        break;
      case 3:
        for (let n = s.u32(); n > 0; n--) {
          info.functionTypes.push(typeAt(info, s.u32(), s.pos));
          declaredFunctions++;
        }
        break;
      case 4:
        for (let n = s.u32(); n > 0; n--) {
          if (s.bytes[s.pos] === 0x40) {
            throw new WasmFormatError("tables with initialisers are not supported", s.pos);
          }
          info.tables.push(readTableType(s));
        }
        break;
      case 5:
        for (let n = s.u32(); n > 0; n--) info.memories.push(readLimits(s));
        break;
      case 6:
        for (let n = s.u32(); n > 0; n--) {
          readValType(s);
          s.byte();
          skipConstExpr(s);
          info.definedGlobalCount++;
        }
        break;
      case 7:
        for (let n = s.u32(); n > 0; n--) {
          const name = s.name();
          const kindAt = s.pos;
          const kind = EXTERN_KINDS[s.byte()];
          if (!kind) throw new WasmFormatError("unknown export kind", kindAt);
          info.exports.push({ name, kind, index: s.u32() });
        }
        break;
      case 8:
        info.start = s.u32();
        break;
      case 10:
        codeBodies = s.u32();
        for (let n = codeBodies; n > 0; n--) s.skip(s.u32());
        break;
      default:
        // element (9), data (11), data count (12), tag (13): not needed by the loader.
        s.pos = end;
    }
    if (s.pos !== end) throw new WasmFormatError(`section ${id} size mismatch`, s.pos);
    r.pos = end;
  }
  if (declaredFunctions > 0 && codeBodies !== declaredFunctions) {
    throw new WasmFormatError(
      `function and code section counts differ (${declaredFunctions} vs ${
        Math.max(codeBodies, 0)
      })`,
      bytes.length,
    );
  }
  return info;
}

function typeAt(info: ModuleInfo, index: number, at: number): FuncType {
  const t = info.types[index];
  if (!t) throw new WasmFormatError(`type index ${index} out of range`, at);
  return t;
}

/** Formats a function type as `(i32, i32) -> i32`. */
export function formatFuncType(t: FuncType): string {
  const res = t.results.length === 0
    ? "()"
    : t.results.length === 1
    ? t.results[0]
    : `(${t.results.join(", ")})`;
  return `(${t.params.join(", ")}) -> ${res}`;
}
