/**
 * The manifest parser, reached without loading its zod schema: `manifest.ts`
 * hands its `parseManifest` over here when it is evaluated, which is when a
 * manifest is first read (or whenever something imports `manifest.ts`). An
 * idle edged with no module installed never loads it (zod and the schema are
 * ~7 MiB of resident memory).
 *
 * @module
 */
import type { Manifest } from "./manifest.ts";

type Parse = (input: unknown) => Manifest;

let loaded: Parse | undefined;

/** Called by `manifest.ts` once evaluated. */
export function provideManifestParser(parse: Parse): void {
  loaded = parse;
}

/** `parseManifest`, if `manifest.ts` is loaded already. */
export function loadedManifestParser(): Parse | undefined {
  return loaded;
}

/** `parseManifest`, loading `manifest.ts` (and zod) the first time. */
export async function manifestParser(): Promise<Parse> {
  if (loaded === undefined) await import("./manifest.ts");
  return loaded!;
}
