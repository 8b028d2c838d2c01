/**
 * The repository's TUF metadata as this device trusts it: the client, made
 * on first use from the root shipped with the device (TUF 5.2), fetching
 * with the idle timeout and cancelled at once by the shutdown; refreshes
 * (checks, the start of an apply, module and model deploys) take turns.
 *
 * @module
 */
import { join } from "node:path";
// ota/tuf loads with the first client (an update check), not in an idle edged.
import type { Fetcher, TufClient } from "../tuf/mod.ts";
import { UpdateNotConfiguredError } from "./errors.ts";
import type { SlotStore } from "./state.ts";
import type { UpdaterOptions } from "./updater.ts";

/** Options of {@linkcode TrustedMetadata}: the updater's repository options, its update area. */
export type TrustedMetadataOptions =
  & Pick<UpdaterOptions, "url" | "rootPath" | "idleTimeoutMs" | "fetcher">
  & {
    /** The update area (its `tuf/` holds the trusted metadata). */
    store: SlotStore;
    /** Aborts every fetch at once (the shutdown). */
    signal: AbortSignal;
  };

/** The device's trusted TUF metadata and the turns of its refreshes. */
export class TrustedMetadata {
  readonly #o: TrustedMetadataOptions;
  #client?: TufClient;
  /** TUF refreshes (checks, the start of an apply, module deploys) take turns. */
  #refreshing: Promise<unknown> = Promise.resolve();

  /** Nothing is read until used. */
  constructor(options: TrustedMetadataOptions) {
    this.#o = options;
  }

  /** Settles once the refreshes started so far have. */
  get settled(): Promise<unknown> {
    return this.#refreshing;
  }

  /** Runs `fn` after the TUF refreshes before it (one at a time). */
  turn<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#refreshing.then(fn, fn);
    this.#refreshing = run.catch(() => {});
    return run;
  }

  /**
   * The TUF client, made on first use.
   * @throws {UpdateNotConfiguredError} without a repository URL or a trusted root.
   */
  async client(): Promise<TufClient> {
    if (this.#o.url === undefined) {
      throw new UpdateNotConfiguredError("no update repository configured (update.url)");
    }
    if (!this.#client) {
      const { HttpFetcher, TufClient } = await import("../tuf/mod.ts");
      const store = this.#o.store;
      await store.ensure();
      try {
        await Deno.stat(join(store.tufDir, "root.json"));
      } catch {
        if (!this.#o.rootPath) {
          throw new UpdateNotConfiguredError(
            `no trusted root: set update.root to the repository's root.json`,
          );
        }
        // TUF 5.2: the root shipped with the device is the start of the chain of trust.
        await TufClient.init(store.tufDir, await Deno.readFile(this.#o.rootPath));
      }
      const base = this.#o.url.endsWith("/") ? this.#o.url : `${this.#o.url}/`;
      const fetcher = this.#o.fetcher ??
        new HttpFetcher({ idleTimeoutMs: this.#o.idleTimeoutMs ?? 30000 });
      this.#client = new TufClient({
        metadataDir: store.tufDir,
        metadataBaseUrl: `${base}metadata/`,
        targetBaseUrl: `${base}targets/`,
        fetcher: abortable(fetcher, this.#o.signal),
      });
    }
    return this.#client;
  }
}

/**
 * `fetcher` whose calls reject as soon as `signal` aborts (the shutdown),
 * instead of when the request's own timeouts end it.
 */
function abortable(fetcher: Fetcher, signal: AbortSignal): Fetcher {
  const race = <T>(p: Promise<T>): Promise<T> => {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  };
  return {
    fetchBytes: (url, maxLength) => race(fetcher.fetchBytes(url, maxLength)),
    fetchToFile: (url, path, maxLength) => race(fetcher.fetchToFile(url, path, maxLength)),
  };
}
