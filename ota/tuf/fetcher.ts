/**
 * Network access of the TUF client behind one small interface, so the
 * update pipeline can plug in its resumable, rate-limited downloader for
 * large targets and tests can substitute a fake, without touching the
 * verification logic.
 *
 * @module
 */
import { concatBytes } from "../../lib/mod.ts";
import {
  DownloadError,
  DownloadHttpError,
  DownloadLengthError,
  DownloadTimeoutError,
} from "./errors.ts";

/** How the TUF client reaches a repository. */
export interface Fetcher {
  /**
   * Downloads `url` into memory. Must fail with {@link DownloadLengthError}
   * rather than read more than `maxLength` bytes (endless data attack), with
   * {@link DownloadHttpError} for HTTP errors (the client treats 403/404 on
   * the next root version as "no newer root").
   */
  fetchBytes(url: string, maxLength: number): Promise<Uint8Array>;
  /**
   * Downloads `url` into the file `path` (created or replaced; an
   * implementation may resume a partial file it left there earlier),
   * never writing more than `maxLength` bytes in total. The client verifies
   * the file's length and hashes afterwards, so this need not.
   */
  fetchToFile(url: string, path: string, maxLength: number): Promise<void>;
}

/** Options of {@link HttpFetcher}. */
export interface HttpFetcherOptions {
  /** Fail when no byte arrives for this long (slow retrieval attack). @default 15000 */
  idleTimeoutMs?: number;
  /** Fail when one metadata download takes longer than this in total. @default 60000 */
  metadataTimeoutMs?: number;
  /** Fail when one target download takes longer than this in total (0: no limit). @default 0 */
  targetTimeoutMs?: number;
  /**
   * Fail when fewer than this many bytes per second arrive, averaged over
   * `lowSpeedWindowMs` (a server trickling just often enough to beat the
   * idle timeout; curl's --speed-limit). 0 turns the check off. @default 512
   */
  lowSpeedBytesPerSecond?: number;
  /** Window of the low-speed check. @default 30000 */
  lowSpeedWindowMs?: number;
  /** Extra request headers (e.g. a User-Agent). */
  headers?: Record<string, string>;
}

/** {@link Fetcher} over HTTP(S) with `fetch`, enforcing lengths and timeouts while streaming. */
export class HttpFetcher implements Fetcher {
  readonly #idle: number;
  readonly #metadataTotal: number;
  readonly #targetTotal: number;
  readonly #lowSpeed: number;
  readonly #lowSpeedWindow: number;
  readonly #headers: Record<string, string>;

  /** Creates a fetcher; see {@link HttpFetcherOptions} for the defaults. */
  constructor(options: HttpFetcherOptions = {}) {
    const {
      idleTimeoutMs = 15000,
      metadataTimeoutMs = 60000,
      targetTimeoutMs = 0,
      lowSpeedBytesPerSecond = 512,
      lowSpeedWindowMs = 30000,
      headers = {},
    } = options;
    for (
      const [name, v] of Object.entries({
        idleTimeoutMs,
        metadataTimeoutMs,
        targetTimeoutMs,
        lowSpeedBytesPerSecond,
        lowSpeedWindowMs,
      })
    ) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be >= 0, got ${v}`);
    }
    this.#idle = idleTimeoutMs;
    this.#metadataTotal = metadataTimeoutMs;
    this.#targetTotal = targetTimeoutMs;
    this.#lowSpeed = lowSpeedBytesPerSecond;
    this.#lowSpeedWindow = lowSpeedWindowMs;
    this.#headers = headers;
  }

  /** See {@link Fetcher.fetchBytes}. */
  async fetchBytes(url: string, maxLength: number): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    await this.#stream(url, maxLength, this.#metadataTotal, (chunk) => {
      chunks.push(chunk);
      return Promise.resolve();
    });
    return concatBytes(chunks);
  }

  /** See {@link Fetcher.fetchToFile}. */
  async fetchToFile(url: string, path: string, maxLength: number): Promise<void> {
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    try {
      await this.#stream(url, maxLength, this.#targetTotal, async (chunk) => {
        let off = 0;
        while (off < chunk.length) off += await file.write(chunk.subarray(off));
      });
      await file.sync();
    } finally {
      file.close();
    }
  }

  async #stream(
    url: string,
    maxLength: number,
    totalMs: number,
    sink: (chunk: Uint8Array) => Promise<void>,
  ): Promise<void> {
    const ctrl = new AbortController();
    let reason: Error | undefined;
    const abort = (err: Error) => {
      reason ??= err;
      ctrl.abort(err);
    };
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    const armIdle = () => {
      clearTimeout(idleTimer);
      if (this.#idle > 0) {
        idleTimer = setTimeout(
          () => abort(new DownloadTimeoutError(`${url}: no data for ${this.#idle} ms`)),
          this.#idle,
        );
      }
    };
    const totalTimer = totalMs > 0
      ? setTimeout(
        () => abort(new DownloadTimeoutError(`${url}: not complete after ${totalMs} ms`)),
        totalMs,
      )
      : undefined;
    try {
      armIdle();
      let res: Response;
      try {
        res = await fetch(url, { signal: ctrl.signal, headers: this.#headers });
      } catch (cause) {
        throw reason ?? new DownloadError(`${url}: ${(cause as Error).message}`, { cause });
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new DownloadHttpError(`${url}: HTTP ${res.status}`, res.status);
      }
      const declared = Number(res.headers.get("content-length") ?? NaN);
      if (declared > maxLength) {
        await res.body?.cancel();
        throw new DownloadLengthError(`${url}: Content-Length ${declared} exceeds ${maxLength}`);
      }
      if (!res.body) return;
      const reader = res.body.getReader();
      let received = 0;
      let windowStart = Date.now();
      let windowBytes = 0;
      try {
        while (true) {
          armIdle();
          const { done, value } = await reader.read();
          if (done) break;
          received += value.length;
          if (received > maxLength) {
            throw new DownloadLengthError(`${url}: more than ${maxLength} bytes`);
          }
          windowBytes += value.length;
          const elapsed = Date.now() - windowStart;
          if (this.#lowSpeed > 0 && elapsed >= this.#lowSpeedWindow) {
            if ((windowBytes * 1000) / elapsed < this.#lowSpeed) {
              throw new DownloadTimeoutError(
                `${url}: below ${this.#lowSpeed} bytes/s for ${this.#lowSpeedWindow} ms`,
              );
            }
            windowStart = Date.now();
            windowBytes = 0;
          }
          await sink(value);
        }
      } catch (cause) {
        await reader.cancel().catch(() => {});
        if (cause instanceof DownloadLengthError || cause instanceof DownloadTimeoutError) {
          throw cause;
        }
        throw reason ?? new DownloadError(`${url}: ${(cause as Error).message}`, { cause });
      }
    } finally {
      clearTimeout(idleTimer);
      clearTimeout(totalTimer);
    }
  }
}
