/**
 * Module and model deploys from the repository: the target found in freshly
 * refreshed metadata (newest version, or the one asked for), verified like
 * any other target, then handed to whoever installs it (the sandbox's hot
 * swap; the inference engine's model store, by BSDIFF40 delta from the
 * installed model when the repository has one, see `model_deploy.ts`). The
 * updater runs them one at a time.
 *
 * @module
 */
import { getLogger } from "../../lib/mod.ts";
import { basename, join } from "node:path";
import { type ModuleCustom, parseCustom } from "../contract.ts";
import { UpdateTargetMissingError } from "./errors.ts";
import type { TrustedMetadata } from "./metadata.ts";
import { fetchModel, pickModel } from "./model_deploy.ts";
import { compareVersions } from "./policy.ts";
import type { SlotStore } from "./state.ts";
import type { TargetDownloader } from "./target_download.ts";

const log = getLogger(["edged", "update"]);

/** What a deploy works with: the updater's metadata, downloader and update area. */
export interface DeployParts {
  metadata: TrustedMetadata;
  downloads: TargetDownloader;
  store: SlotStore;
  /** Cancels the deploy (the shutdown). */
  signal: AbortSignal;
}

/**
 * Deploys module `name` (newest version, or `version`) through `install`.
 * `accept` sees the version found before anything is downloaded, and throws
 * to refuse it (policy).
 */
export async function deployModule(
  parts: DeployParts,
  install: (manifest: unknown, wasm: Uint8Array) => Promise<unknown>,
  name: string,
  version?: string,
  accept?: (version: string) => void,
): Promise<{ name: string; version: string }> {
  const { metadata, downloads, store, signal } = parts;
  const { client, info, custom } = await metadata.turn(async () => {
    const client = await metadata.client();
    await client.refresh();
    const targets = Object.fromEntries(client.listTargets().map((t) => [t.path, t]));
    const found: { path: string; custom: ModuleCustom }[] = [];
    for (const [path, t] of Object.entries(targets)) {
      const c = parseCustom(t.custom);
      if (c?.kind !== "module" || c.name !== name) continue;
      if (version === undefined || c.version === version) found.push({ path, custom: c });
    }
    found.sort((a, b) => compareVersions(b.custom.version, a.custom.version));
    if (found.length === 0) {
      throw new UpdateTargetMissingError(
        `the repository has no module ${name}${version ? ` version ${version}` : ""}`,
      );
    }
    const info = await client.requireTargetInfo(found[0].path);
    // 5.6.7: the entry used is the one the trusted delegation search returns.
    const custom = parseCustom(info.custom);
    if (custom?.kind !== "module") {
      throw new UpdateTargetMissingError(`${found[0].path} is not a module target`);
    }
    return { client, info, custom };
  });
  accept?.(custom.version);
  await store.ensure();
  const sha = info.hashes.sha256;
  const file = await downloads.fetch(client, info, signal, {
    dest: join(store.moduleDownloadsDir, `${sha}-${basename(info.path)}`),
  });
  const wasm = await Deno.readFile(file.path);
  await install(custom.manifest, wasm);
  await Deno.remove(file.path).catch(() => {});
  const v = custom.version;
  log.info("deployed module {name} {version} from the repository", { name, version: v });
  return { name, version: v };
}

/** How a model is installed, and what is installed now (the source of model deltas). */
export interface ModelInstaller {
  install: (name: string, bytes: Uint8Array, version: string) => Promise<unknown>;
  installed?: (name: string) => Promise<{ sha256: string; path: string } | undefined>;
}

/**
 * Deploys model `name` (newest version, or `version`), by delta from the
 * installed version when the repository has one; "unchanged" when that is
 * the one listed. `accept` as for {@linkcode deployModule}.
 */
export async function deployModel(
  parts: DeployParts,
  models: ModelInstaller,
  name: string,
  version?: string,
  accept?: (version: string) => void,
): Promise<{ name: string; version: string; method: "delta" | "full" | "unchanged" }> {
  const { metadata, downloads, store, signal } = parts;
  const { client, info, targets } = await metadata.turn(async () => {
    const client = await metadata.client();
    await client.refresh();
    const targets = client.listTargets().map((t) => ({
      path: t.path,
      custom: parseCustom(t.custom),
    }));
    const info = await client.requireTargetInfo(pickModel(targets, name, version));
    return { client, info, targets };
  });
  const installed = await models.installed?.(name);
  const listed = parseCustom(info.custom);
  if (installed?.sha256 === info.hashes.sha256 && listed?.kind === "model") {
    return { name, version: listed.version, method: "unchanged" };
  }
  if (listed?.kind === "model") accept?.(listed.version);
  await store.ensure();
  const got = await fetchModel({
    client,
    info,
    targets,
    installed,
    dir: store.moduleDownloadsDir,
    download: (i) =>
      downloads.fetch(client, i, signal, {
        dest: join(store.moduleDownloadsDir, `${i.hashes.sha256}-${basename(i.path)}`),
      }),
  });
  try {
    await models.install(name, await Deno.readFile(got.path), got.custom.version);
  } finally {
    await Deno.remove(got.path).catch(() => {});
  }
  log.info("deployed model {name} {version} from the repository ({method})", {
    name,
    version: got.custom.version,
    method: got.method,
  });
  return { name, version: got.custom.version, method: got.method };
}
