/**
 * Proving that edged does not load a module: run it with an import map in
 * which that module is replaced by one that throws when it is evaluated.
 *
 * @module
 */

const ROOT = new URL("../../", import.meta.url).pathname;

/** One import replaced by a module that throws "`what` was loaded" on evaluation. */
export interface ThrowingImport {
  /** The import map's key, e.g. `zod`. */
  specifier: string;
  /** What the error names. */
  what: string;
  /** The module's exports, so the code that imports it still type-checks and links. */
  exports: string;
}

/**
 * Writes into `dir` a deno.json like the project's, but whose import
 * `specifier` is a module that throws "`what` was loaded" on evaluation
 * (exporting `exports`, so the code that imports it still type-checks and
 * links), and a copy of the project's lock (deno may rewrite it), so nothing
 * is resolved afresh from npm. Returns the deno.json's path.
 */
export function configWithThrowingImport(
  dir: string,
  specifier: string,
  what: string,
  exports: string,
): Promise<string> {
  return configWithThrowingImports(dir, [{ specifier, what, exports }]);
}

/** {@linkcode configWithThrowingImport} for several imports at once. */
export async function configWithThrowingImports(
  dir: string,
  imports: readonly ThrowingImport[],
): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  for (const { specifier, what, exports } of imports) {
    const stub = `${specifier.replace(/\W/g, "_")}_stub.ts`;
    await Deno.writeTextFile(
      `${dir}/${stub}`,
      `throw new Error(${JSON.stringify(`${what} was loaded`)});\n${exports}\n`,
    );
    config.imports[specifier] = `./${stub}`;
  }
  const path = `${dir}/deno.json`;
  await Deno.writeTextFile(path, JSON.stringify(config));
  await Deno.copyFile(`${ROOT}deno.lock`, `${dir}/deno.lock`);
  return path;
}

/**
 * A `startEdged` wrapper that runs deno with `--config $CFG` before edged's
 * own flags (exec keeps the pid); pass `env: { CFG }`.
 */
export const WITH_CONFIG: readonly string[] = [
  "/bin/sh",
  "-c",
  'd=$0; r=$1; shift; exec "$d" "$r" --config "$CFG" "$@"',
];

/**
 * The options of a test built on an import map: it is skipped when the suite
 * runs edged from a bundle (`deno task test --bundle`), which holds its
 * packages and reads no import map.
 */
export const IMPORT_MAP_TEST: { ignore: boolean } = {
  ignore: Deno.env.has("TEST_EDGED_BUNDLE"),
};
