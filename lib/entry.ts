/**
 * Where a Worker's entry module is, whether edged runs from its source files
 * or from the bundle `deno task bundle` builds (and `deno task compile`
 * embeds). The bundle is flat: every shared chunk sits at its root (this
 * file's code among them), and each Worker's entry at its source path with
 * `.js` for `.ts` (`sandbox/worker.ts` becomes `sandbox/worker.js`).
 *
 * @module
 */

/** Whether edged runs from its source files (this file is `lib/entry.ts`), not from the bundle. */
const FROM_SOURCE = import.meta.url.endsWith(".ts");

/** The repository's root from source; the bundle's root, where this code's chunk sits, from the bundle. */
const ROOT = new URL(FROM_SOURCE ? "../" : "./", import.meta.url);

/**
 * The URL of the Worker entry `path` (named by its source path from the
 * repository's root, such as `"sandbox/worker.ts"`) in the layout under
 * `root`: the source tree, or a bundle.
 */
export function entryIn(root: URL, fromSource: boolean, path: string): URL {
  if (!path.endsWith(".ts")) {
    throw new RangeError(`worker entries are named by their .ts source path, got ${path}`);
  }
  return new URL(fromSource ? path : `${path.slice(0, -3)}.js`, root);
}

/** The URL of the Worker entry `path` (such as `"sandbox/worker.ts"`) in the layout edged runs from. */
export function workerEntry(path: string): URL {
  return entryIn(ROOT, FROM_SOURCE, path);
}
