/**
 * Resumable, rate-limited, verified downloads of update targets.
 *
 * A download writes `<dest>.part` and, every `syncEveryBytes`, fsyncs it and
 * records the durable length in `<dest>.part.json`. After a disconnect, a
 * crash or a power loss the next attempt truncates the part file to the
 * recorded length (bytes after the last fsync may be garbage after power
 * loss) and asks for the rest with an HTTP Range request (RFC 9110 section
 * 14.2). Targets are content-addressed (consistent snapshots put the hash in
 * the file name), so a resumed download cannot splice two versions of a
 * file; the length and SHA-256 are verified before the file is used anyway.
 *
 * Every call is bounded in time: an attempt fails when no byte arrives for
 * `idleTimeoutMs`, and the whole call when the file is not complete by a
 * deadline scaled to what is missing (`idleTimeoutMs` plus the missing bytes
 * at `minBytesPerSecond`), so a server trickling just fast enough to beat
 * the idle timeout cannot hold the device for hours. What arrived before the
 * deadline, a cancellation or a crash stays for the next call to resume.
 *
 * @module
 */
import { dirname } from "node:path";
import { DiskSpaceError, UpdateDownloadError, UpdateVerificationError } from "./errors.ts";
import { freeBytes } from "./_fs.ts";
import { getLogger, isNoSpace, sha256File, syncDir, writeFileAtomic } from "../../lib/mod.ts";
import { sleep, type TokenBucket } from "./token_bucket.ts";

const log = getLogger(["edged", "update", "download"]);

/** Progress of one download, as reported to callbacks and the status API. */
export interface DownloadProgress {
  /** Bytes of the file present (durable or not). */
  received: number;
  /** Expected length in bytes. */
  total: number;
  /** Bytes already on disk when this call started (resumed from). */
  resumedFrom: number;
  /** Attempts made so far (1 on the first request). */
  attempt: number;
}

/** Options of {@linkcode download}. */
export interface DownloadOptions {
  /** Where to fetch from. */
  url: string;
  /** Final path; written only once the file is complete and verified. */
  dest: string;
  /** Exact length from trusted metadata; more bytes are refused (endless data). */
  length: number;
  /** Lower-case hex SHA-256 from trusted metadata. */
  sha256: string;
  /** Bandwidth limit shared by all downloads. @default unlimited */
  bucket?: TokenBucket;
  /** Attempts without progress before giving up. @default {6} */
  retries?: number;
  /**
   * Attempts in total, with or without progress: a server that trickles a
   * few bytes per connection cannot keep the device busy forever. @default {100}
   */
  maxAttempts?: number;
  /** First back-off delay; doubles per failed attempt, full jitter. @default {500} */
  backoffMs?: number;
  /** Longest back-off delay. @default {30000} */
  maxBackoffMs?: number;
  /** Fail an attempt when no byte arrives for this long (slow server). @default {30000} */
  idleTimeoutMs?: number;
  /**
   * Give up (keeping what arrived) when the file is not complete within
   * `idleTimeoutMs` + missing bytes / this rate. @default {8192}
   */
  minBytesPerSecond?: number;
  /** Name of the target in errors. @default url */
  target?: string;
  /** Free space that must remain after the download. @default {16 MiB} */
  reserveBytes?: number;
  /** fsync and record progress every this many bytes... @default {256 KiB} */
  syncEveryBytes?: number;
  /** ...or after this many milliseconds with unsynced bytes. @default {1000} */
  syncEveryMs?: number;
  /** Cancels the download (the partial file stays for a later resume). */
  signal?: AbortSignal;
  /** Progress callback, called per chunk. */
  onProgress?: (p: DownloadProgress) => void;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

/** The durable progress record beside a part file. */
interface PartRecord {
  url: string;
  length: number;
  sha256: string;
  durable: number;
}

/** Thrown for answers that retrying cannot fix (4xx, a wrong Content-Range). */
class PermanentError extends UpdateDownloadError {}

/** What {@linkcode download} did. */
export interface DownloadResult {
  /** The verified file (== `dest`). */
  path: string;
  /** Bytes fetched over the network by this call. */
  fetched: number;
  /** Bytes reused from an earlier, interrupted download. */
  resumedFrom: number;
  /** Attempts (requests) made. */
  attempts: number;
}

async function readRecord(path: string): Promise<PartRecord | undefined> {
  try {
    const r = JSON.parse(await Deno.readTextFile(path));
    if (typeof r?.durable === "number" && typeof r?.sha256 === "string") return r as PartRecord;
  } catch { /* missing or torn: start over */ }
  return undefined;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return -1;
    throw err;
  }
}

/**
 * Downloads `url` to `dest`, resuming what an earlier call left, within the
 * bandwidth limit, retrying with exponential back-off and full jitter, and
 * verifying length and SHA-256 before the file appears at `dest`.
 *
 * @example
 * ```ts ignore
 * await download({ url, dest: "/data/update/downloads/x", length: info.length, sha256 });
 * ```
 */
export async function download(options: DownloadOptions): Promise<DownloadResult> {
  const {
    url,
    dest,
    length,
    sha256,
    bucket,
    retries = 6,
    maxAttempts = 100,
    backoffMs = 500,
    maxBackoffMs = 30000,
    idleTimeoutMs = 30000,
    minBytesPerSecond = 8192,
    target = url,
    reserveBytes = 16 << 20,
    syncEveryBytes = 256 << 10,
    syncEveryMs = 1000,
    signal,
    onProgress,
    headers = {},
  } = options;
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`length must be a byte count >= 0, got ${length}`);
  }
  if (!/^[0-9a-f]{64}$/.test(sha256)) {
    throw new TypeError(`sha256 must be 64 lower-case hex digits, got "${sha256}"`);
  }
  if (!(minBytesPerSecond > 0)) {
    throw new RangeError(`minBytesPerSecond must be > 0, got ${minBytesPerSecond}`);
  }
  // Already complete from an earlier call (e.g. crash after the rename).
  if ((await sha256File(dest)) === sha256 && (await fileSize(dest)) === length) {
    return { path: dest, fetched: 0, resumedFrom: length, attempts: 0 };
  }
  const part = `${dest}.part`;
  const recordPath = `${dest}.part.json`;
  let durable = 0;
  const rec = await readRecord(recordPath);
  const partSize = await fileSize(part);
  if (rec && rec.sha256 === sha256 && rec.length === length && partSize >= rec.durable) {
    durable = rec.durable;
  }
  // Only what was fsync'd is trusted; anything after it is dropped.
  {
    using f = await Deno.open(part, { write: true, create: true });
    await f.truncate(durable);
    await f.sync();
  }
  await writeFileAtomic(recordPath, encodeRecord({ url, length, sha256, durable }));
  const resumedFrom = durable;

  // Free-disk check before any byte is fetched.
  const need = length - durable + reserveBytes;
  const free = await freeBytes(dirname(dest));
  if (free < need) {
    throw new DiskSpaceError(
      `${dirname(dest)} has ${free} bytes free; the download needs ${length - durable} plus ` +
        `${reserveBytes} reserved`,
    );
  }

  let have = durable;
  let attempt = 0;
  let failures = 0;
  let fetched = 0;
  // The deadline and the caller's signal end the call the same way: the
  // attempt under way stops, keeps its bytes durable, and nothing is retried.
  // (setTimeout fires at once for delays past 2^31 - 1 ms, about 24.8 days.)
  const deadlineMs = Math.min(
    2 ** 31 - 1,
    idleTimeoutMs + Math.ceil((length - durable) / minBytesPerSecond * 1000),
  );
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal!.reason);
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });
  const deadline = setTimeout(() => {
    stop.abort(
      new UpdateDownloadError(
        `${target}: not complete within ${deadlineMs / 1000} s (${length - durable} bytes at ` +
          `${minBytesPerSecond} B/s or more, plus ${idleTimeoutMs / 1000} s); the bytes that ` +
          `arrived are kept for the next attempt`,
      ),
    );
  }, deadlineMs);
  try {
    while (true) {
      stop.signal.throwIfAborted();
      attempt++;
      const before = have;
      try {
        if (have < length || length === 0) {
          have = await fetchRange({
            url,
            target,
            part,
            recordPath,
            from: have,
            length,
            sha256,
            bucket,
            idleTimeoutMs,
            syncEveryBytes,
            syncEveryMs,
            signal: stop.signal,
            headers,
            onChunk: (n, got) => {
              fetched += n;
              onProgress?.({ received: got, total: length, resumedFrom, attempt });
            },
          });
        }
        break;
      } catch (err) {
        if (err instanceof PartialError) have = err.have;
        const cause = err instanceof PartialError ? err.cause : err;
        if (stop.signal.aborted) throw stop.signal.reason;
        if (
          cause instanceof PermanentError || cause instanceof UpdateVerificationError ||
          cause instanceof DiskSpaceError
        ) {
          throw cause;
        }
        // Progress resets the count: a long download over a flaky link still completes.
        failures = have > before ? 1 : failures + 1;
        if (failures > retries || attempt >= maxAttempts) {
          throw new UpdateDownloadError(
            `${target}: gave up after ${attempt} attempts: ${(cause as Error).message}`,
            { cause },
          );
        }
        const cap = Math.min(maxBackoffMs, backoffMs * 2 ** (failures - 1));
        const delay = Math.round(Math.random() * cap);
        log.info("download of {url} failed ({error}); retry {n} in {ms} ms from byte {have}", {
          url,
          error: (cause as Error).message,
          n: failures,
          ms: delay,
          have,
        });
        await sleep(delay, stop.signal).catch(() => {});
      }
    }
  } finally {
    clearTimeout(deadline);
    signal?.removeEventListener("abort", onAbort);
  }

  // Verify before use: length and SHA-256 of the trusted metadata. Bytes
  // that do not verify are dropped: resuming them would only repeat this.
  const got = await sha256File(part);
  const size = await fileSize(part);
  if (size !== length || got !== sha256) {
    await Deno.remove(part).catch(() => {});
    await Deno.remove(recordPath).catch(() => {});
    throw new UpdateVerificationError(
      target,
      { sha256, length },
      { sha256: got ?? null, length: Math.max(0, size) },
      { detail: "downloaded file does not match" },
    );
  }
  await Deno.rename(part, dest);
  await syncDir(dirname(dest));
  await Deno.remove(recordPath).catch(() => {});
  return { path: dest, fetched, resumedFrom, attempts: attempt };
}

function encodeRecord(r: PartRecord): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(r));
}

/** An attempt failed after writing up to `have` bytes. */
class PartialError extends Error {
  constructor(readonly have: number, cause: unknown) {
    super("partial", { cause });
  }
}

interface RangeRequest {
  url: string;
  target: string;
  part: string;
  recordPath: string;
  from: number;
  length: number;
  sha256: string;
  bucket?: TokenBucket;
  idleTimeoutMs: number;
  syncEveryBytes: number;
  syncEveryMs: number;
  signal?: AbortSignal;
  headers: Record<string, string>;
  onChunk: (n: number, received: number) => void;
}

/** One request for bytes `from`.. of the file; returns the bytes now present. */
async function fetchRange(r: RangeRequest): Promise<number> {
  const ctrl = new AbortController();
  const onAbort = () => ctrl.abort(r.signal!.reason);
  r.signal?.addEventListener("abort", onAbort, { once: true });
  let idle: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      timedOut = true;
      ctrl.abort(new UpdateDownloadError(`${r.target}: no data for ${r.idleTimeoutMs} ms`));
    }, r.idleTimeoutMs);
  };
  let have = r.from;
  using file = await Deno.open(r.part, { write: true });
  let sinceSync = 0;
  let lastSync = performance.now();
  const persist = async () => {
    await file.sync();
    await writeFileAtomic(
      r.recordPath,
      encodeRecord({ url: r.url, length: r.length, sha256: r.sha256, durable: have }),
    );
    sinceSync = 0;
    lastSync = performance.now();
  };
  try {
    arm();
    const headers = new Headers(r.headers);
    if (r.from > 0) headers.set("range", `bytes=${r.from}-`);
    let res: Response;
    try {
      res = await fetch(r.url, { headers, signal: ctrl.signal });
    } catch (cause) {
      throw new UpdateDownloadError(`${r.url}: ${(cause as Error).message}`, { cause });
    }
    if (res.status === 416 && r.from === r.length) {
      await res.body?.cancel();
      return have;
    }
    if (res.status === 200 && r.from > 0) {
      // The server ignored the range: start over from byte 0.
      await file.truncate(0);
      await file.seek(0, Deno.SeekMode.Start);
      have = 0;
    } else if (res.status === 206) {
      const range = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
      if (!range || Number(range[1]) !== r.from) {
        await res.body?.cancel();
        throw new PermanentError(
          `${r.url}: asked for bytes from ${r.from}, got Content-Range ` +
            `"${res.headers.get("content-range")}"`,
        );
      }
      await file.seek(r.from, Deno.SeekMode.Start);
    } else if (!res.ok) {
      await res.body?.cancel();
      const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
      const Err = retryable ? UpdateDownloadError : PermanentError;
      throw new Err(`${r.url}: HTTP ${res.status}`);
    } else {
      await file.seek(0, Deno.SeekMode.Start);
    }
    const declared = Number(res.headers.get("content-length") ?? NaN);
    if (declared > r.length - have) {
      await res.body?.cancel();
      throw new UpdateVerificationError(
        r.target,
        { sha256: r.sha256, length: r.length },
        { sha256: null, length: have + declared },
        { detail: `the server announces ${declared} bytes from byte ${have}, more than listed` },
      );
    }
    if (!res.body) return have;
    const reader = res.body.getReader();
    try {
      while (true) {
        arm();
        const { done, value } = await reader.read();
        if (done) break;
        // Endless data: never write past the trusted length.
        if (have + value.length > r.length) {
          throw new UpdateVerificationError(
            r.target,
            { sha256: r.sha256, length: r.length },
            { sha256: null, length: have + value.length },
            { detail: "the server sends more bytes than listed (endless data)" },
          );
        }
        clearTimeout(idle);
        await r.bucket?.take(value.length, ctrl.signal);
        let off = 0;
        while (off < value.length) off += await file.write(value.subarray(off));
        have += value.length;
        sinceSync += value.length;
        r.onChunk(value.length, have);
        if (sinceSync >= r.syncEveryBytes || performance.now() - lastSync >= r.syncEveryMs) {
          await persist();
        }
      }
    } catch (cause) {
      await reader.cancel().catch(() => {});
      if (cause instanceof PermanentError || cause instanceof UpdateVerificationError) throw cause;
      if (isNoSpace(cause)) {
        throw new DiskSpaceError(`${r.part}: the disk filled up at byte ${have}`, { cause });
      }
      if (timedOut) throw ctrl.signal.reason;
      if (r.signal?.aborted) throw r.signal.reason;
      throw new UpdateDownloadError(`${r.url}: ${(cause as Error).message}`, { cause });
    }
    if (have < r.length) {
      throw new UpdateDownloadError(`${r.url}: connection closed at byte ${have} of ${r.length}`);
    }
    return have;
  } catch (err) {
    throw new PartialError(have, err);
  } finally {
    clearTimeout(idle);
    r.signal?.removeEventListener("abort", onAbort);
    // Whatever arrived is kept durable for the next attempt.
    if (sinceSync > 0) await persist().catch(() => {});
  }
}
