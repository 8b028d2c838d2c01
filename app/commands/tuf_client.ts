/**
 * `edged tuf-client`: the client-under-test CLI protocol of the TUF
 * conformance suite (theupdateframework/tuf-conformance, CLIENT-CLI.md):
 *
 *     edged tuf-client --metadata-dir DIR init TRUSTED_ROOT
 *     edged tuf-client --metadata-dir DIR --metadata-url URL refresh
 *     edged tuf-client --metadata-dir DIR --metadata-url URL --target-name PATH...
 *       --target-base-url URL --target-dir DIR download
 *
 * Exit 0 on success, 1 when any part fails, 2 on usage errors.
 *
 * @module
 */
import { Command } from "commander";
import { TargetNotFoundError, TufClient } from "../../ota/tuf/mod.ts";
import { EXIT } from "../../lib/mod.ts";

interface GlobalOptions {
  metadataDir?: string;
  metadataUrl?: string;
  targetName?: string[];
  targetBaseUrl?: string;
  targetDir?: string;
}

function need<K extends keyof GlobalOptions>(
  opts: GlobalOptions,
  key: K,
  flag: string,
): NonNullable<GlobalOptions[K]> {
  const v = opts[key];
  if (v === undefined) {
    console.error(`edged tuf-client: ${flag} is required`);
    Deno.exit(EXIT.USAGE);
  }
  return v!;
}

function fail(command: string, err: unknown): never {
  const e = err as Error;
  console.error(`edged tuf-client ${command}: ${e?.name ?? "Error"}: ${e?.message ?? String(err)}`);
  Deno.exit(EXIT.FAILURE);
}

/** Builds the `tuf-client` command (CLIENT-CLI.md of tuf-conformance). */
export function tufClientCommand(): Command {
  const cmd = new Command("tuf-client")
    .description("TUF client speaking the tuf-conformance client-under-test protocol")
    .option("--metadata-dir <dir>", "directory of trusted metadata")
    .option("--metadata-url <url>", "base URL of repository metadata")
    .option(
      "--target-name <path>",
      "target path to download (repeatable, processed in order)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option("--target-base-url <url>", "base URL of repository targets")
    .option("--target-dir <dir>", "directory for downloaded targets");

  cmd.command("init")
    .description("install TRUSTED_ROOT as the trusted root (no network access)")
    .argument("<trusted-root>", "file with the initial root.json")
    .action(async (trustedRoot: string) => {
      const opts = cmd.opts<GlobalOptions>();
      const dir = need(opts, "metadataDir", "--metadata-dir");
      try {
        await TufClient.init(dir, await Deno.readFile(trustedRoot));
      } catch (err) {
        fail("init", err);
      }
    });

  cmd.command("refresh")
    .description("update top-level metadata following the TUF client workflow")
    .action(async () => {
      const opts = cmd.opts<GlobalOptions>();
      const client = new TufClient({
        metadataDir: need(opts, "metadataDir", "--metadata-dir"),
        metadataBaseUrl: need(opts, "metadataUrl", "--metadata-url"),
      });
      try {
        await client.refresh();
      } catch (err) {
        fail("refresh", err);
      }
    });

  cmd.command("download")
    .description("refresh, then download each --target-name verified into --target-dir")
    .action(async () => {
      const opts = cmd.opts<GlobalOptions>();
      const names = need(opts, "targetName", "--target-name");
      const client = new TufClient({
        metadataDir: need(opts, "metadataDir", "--metadata-dir"),
        metadataBaseUrl: need(opts, "metadataUrl", "--metadata-url"),
        targetBaseUrl: need(opts, "targetBaseUrl", "--target-base-url"),
        targetDir: need(opts, "targetDir", "--target-dir"),
      });
      try {
        await client.refresh();
        for (const name of names) {
          const info = await client.getTargetInfo(name);
          if (!info) throw new TargetNotFoundError(`no trusted targets role lists ${name}`);
          if (await client.findCachedTarget(info)) continue;
          await client.downloadTarget(info);
        }
      } catch (err) {
        fail("download", err);
      }
    });

  return cmd;
}
