/**
 * Where a Worker's entry module is, whether edged runs from its source files
 * or from the bundle `deno task bundle` builds (and `deno task compile`
 * embeds). The bundle is flat: every shared chunk sits at its root, and each
 * Worker's entry at its source path with `.js` for `.ts`
 * (`sandbox/worker.ts` becomes `sandbox/worker.js`).
 *
 * @module
 */

/**
 * The URL of the Worker entry `path` (relative to the repository root, such
 * as `"sandbox/worker.ts"`), for code at `callerUrl` (its `import.meta.url`)
 * that lives at `callerPath` in the repository. From source it resolves
 * beside the caller; from the bundle (the caller is a `.js` chunk at the
 * bundle's root) it resolves from that root.
 */
export function workerEntry(callerUrl: string, callerPath: string, path: string): URL {
  if (!path.endsWith(".ts") || !callerPath.endsWith(".ts")) {
    throw new RangeError(`worker entries are named by their .ts source path, got ${path}`);
  }
  if (callerUrl.endsWith(".ts")) {
    const root = new URL("./" + "../".repeat(callerPath.split("/").length - 1), callerUrl);
    return new URL(path, root);
  }
  return new URL(path.slice(0, -3) + ".js", callerUrl);
}
