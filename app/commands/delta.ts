/**
 * `edged delta diff OLD NEW PATCH` and `edged delta patch OLD PATCH NEW`
 * (README.md, "Command line"). Exit 0 on success, 1 when the operation fails
 * (a bad patch names the broken rule), 2 on usage errors (commander).
 *
 * @module
 */
import { Command } from "commander";
import { applyPatch, DeltaError, diffFiles } from "../../ota/delta/mod.ts";
import { createProgress, EXIT } from "../../lib/mod.ts";

function fail(command: string, err: unknown): never {
  if (err instanceof DeltaError) {
    console.error(`edged delta ${command}: invalid patch (${err.code}): ${err.message}`);
  } else if (err instanceof Deno.errors.NotFound) {
    console.error(`edged delta ${command}: ${err.message}`);
  } else {
    console.error(`edged delta ${command}: ${err instanceof Error ? err.message : String(err)}`);
  }
  Deno.exit(EXIT.FAILURE);
}

/**
 * The `delta` command with its `diff` and `patch` sub-commands, for
 * `program.addCommand(deltaCommand())`.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { deltaCommand } from "./delta.ts";
 * new Command("edged").addCommand(deltaCommand());
 * ```
 */
export function deltaCommand(): Command {
  const delta = new Command("delta")
    .description("BSDIFF40 binary deltas, interchangeable with bsdiff/bspatch 4.3");

  delta.command("diff")
    .description("write a patch that turns OLD into NEW (same bytes as Debian's bsdiff)")
    .argument("<old>", "the file the device has")
    .argument("<new>", "the file it should get")
    .argument("<patch>", "where to write the BSDIFF40 patch")
    .option("-q, --quiet", "no progress output")
    .action(async (old: string, nw: string, patch: string, opts: { quiet?: boolean }) => {
      // Progress in per mille of the whole job, the phases weighted by their usual share.
      const progress = createProgress("diff", { total: 1000, quiet: opts.quiet });
      const weights = { sort: [0, 0.3], match: [0.3, 0.6], compress: [0.9, 0.1] } as const;
      try {
        const size = await diffFiles(old, nw, patch, {
          onProgress: (phase, f) => {
            const [start, span] = weights[phase];
            progress.update(Math.round(1000 * (start + span * f)), undefined, phase);
          },
        });
        progress.done();
        if (!opts.quiet) console.error(`wrote ${patch} (${size} bytes)`);
      } catch (err) {
        progress.done();
        fail("diff", err);
      }
    });

  const patchCommand = delta.command("patch")
    .description("apply PATCH to OLD and write NEW atomically (hardened bspatch)")
    .argument("<old>", "the file the patch was made from")
    .argument("<patch>", "a BSDIFF40 patch")
    .argument("<new>", "where to write the result (replaced only on success)")
    .option("--sha256 <hex>", "refuse the result unless it has this SHA-256")
    .option("--max-size <bytes>", "largest new file to accept", "4294967296")
    .option("-q, --quiet", "no progress output")
    .action(
      async (
        old: string,
        patch: string,
        nw: string,
        opts: { sha256?: string; maxSize: string; quiet?: boolean },
      ) => {
        const maxNewSize = Number(opts.maxSize);
        if (!Number.isSafeInteger(maxNewSize) || maxNewSize < 0) {
          patchCommand.error(`--max-size must be a non-negative integer, got "${opts.maxSize}"`, {
            exitCode: 2,
          });
        }
        if (opts.sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(opts.sha256)) {
          patchCommand.error(`--sha256 must be 64 hex digits, got "${opts.sha256}"`, {
            exitCode: 2,
          });
        }
        const progress = createProgress("patch", { unit: "bytes", quiet: opts.quiet });
        try {
          const { size, sha256 } = await applyPatch(old, patch, nw, {
            maxNewSize,
            expectedSha256: opts.sha256,
            onProgress: (done, total) => progress.update(done, total),
          });
          progress.done();
          if (!opts.quiet) console.error(`wrote ${nw} (${size} bytes, sha256 ${sha256})`);
        } catch (err) {
          progress.done();
          fail("patch", err);
        }
      },
    );

  return delta;
}
