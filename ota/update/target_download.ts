/**
 * One TUF target fetched for the updater: downloaded (resumable, through the
 * device's one bandwidth limiter, given up below the lowest rate allowed),
 * its progress kept for the status, and verified against its trusted entry
 * before anyone uses it (TUF 5.7.3). Also clears the release downloads no
 * longer wanted.
 *
 * @module
 */
import { basename, join } from "node:path";
import type { TargetInfo, TufClient } from "../tuf/mod.ts";
import { download, type DownloadProgress, type DownloadResult } from "./download.ts";
import { UpdateError } from "./errors.ts";
import { verifyTarget } from "./stage.ts";
import type { SlotStore } from "./state.ts";
import { TokenBucket } from "./token_bucket.ts";
import type { UpdaterOptions } from "./updater.ts";

/** The download under way, as the status reports it. */
export interface TargetProgress {
  target: string;
  received: number;
  total: number;
  resumed_from: number;
  bytes_per_second: number;
}

/** Options of {@linkcode TargetDownloader}: the updater's download options and its update area. */
export type TargetDownloaderOptions =
  & Pick<
    UpdaterOptions,
    "rateLimit" | "burst" | "retries" | "idleTimeoutMs" | "minRateBytesPerS" | "backoffMs"
  >
  & {
    /** The update area (downloads go beside the slots). */
    store: SlotStore;
  };

/** Downloads and verifies the updater's targets, one bandwidth limit for all. */
export class TargetDownloader {
  readonly #o: TargetDownloaderOptions;
  readonly #bucket: TokenBucket;
  #progress: TargetProgress | null = null;

  /** A downloader with its own token bucket. */
  constructor(options: TargetDownloaderOptions) {
    this.#o = options;
    this.#bucket = new TokenBucket({
      rate: options.rateLimit ?? 0,
      burst: options.burst ?? Math.max(1, options.rateLimit ?? 1),
    });
  }

  /** Progress of the download under way, if any. */
  get progress(): TargetProgress | null {
    return this.#progress;
  }

  /** No download is under way any more. */
  clearProgress(): void {
    this.#progress = null;
  }

  /** The lowest average rate a download may take before it is given up (resumable). */
  #minRate(): number {
    const floor = this.#o.minRateBytesPerS ?? 8192;
    const limit = this.#o.rateLimit ?? 0;
    return limit > 0 ? Math.min(floor, limit / 2) : floor;
  }

  /**
   * Downloads and verifies one target: to `dest` (by default beside the
   * other downloads); `onFirstBytes` is called once the first bytes are on disk.
   */
  async fetch(
    client: TufClient,
    info: TargetInfo,
    signal: AbortSignal,
    o: { onFirstBytes?: () => void; dest?: string } = {},
  ): Promise<DownloadResult> {
    const sha = info.hashes.sha256;
    if (!sha) throw new UpdateError(`${info.path} lists no sha256`);
    const started = performance.now();
    let first = true;
    const res = await download({
      url: client.targetUrl(info),
      target: info.path,
      dest: o.dest ?? join(this.#o.store.downloadsDir, `${sha}-${basename(info.path)}`),
      length: info.length,
      sha256: sha,
      bucket: this.#bucket,
      retries: this.#o.retries,
      idleTimeoutMs: this.#o.idleTimeoutMs,
      minBytesPerSecond: this.#minRate(),
      backoffMs: this.#o.backoffMs,
      signal,
      onProgress: (p: DownloadProgress) => {
        const secs = (performance.now() - started) / 1000;
        this.#progress = {
          target: info.path,
          received: p.received,
          total: p.total,
          resumed_from: p.resumedFrom,
          bytes_per_second: secs > 0 ? Math.round((p.received - p.resumedFrom) / secs) : 0,
        };
        if (first) o.onFirstBytes?.();
        first = false;
      },
    });
    // TUF 5.7.3: every listed hash and the length, before use.
    await verifyTarget(client, info, res.path);
    return res;
  }

  /** Removes release downloads, except those of the targets with digests in `keep`. */
  async clean(keep: (string | undefined)[] = []): Promise<void> {
    const dir = this.#o.store.downloadsDir;
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || keep.some((sha) => sha && e.name.startsWith(sha))) continue;
      await Deno.remove(join(dir, e.name)).catch(() => {});
    }
  }
}
