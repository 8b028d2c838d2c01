/**
 * Garbage collection in a sandbox Worker. V8 frees a dropped instance's
 * linear memory only when it collects, and left alone it lets hundreds of
 * megabytes of them pile up (measured: a module faulting with 16 MiB touched
 * swung RSS between 100 and 385 MiB); so after faults and unloads the Worker
 * collects itself once {@link COLLECT_AFTER_BYTES} have been let go of.
 *
 * @module
 */
import { collectNow } from "../lib/mod.ts";

/** A collection runs once this much linear memory is garbage. */
const COLLECT_AFTER_BYTES = 16 << 20;

/** Linear memory of instances let go of since the last collection (bytes). */
let garbageBytes = 0;

/** Counts `bytes` of linear memory let go of (a dropped instance, a failed load). */
export function discarded(bytes: number): void {
  garbageBytes += bytes;
}

/** Collects when enough linear memory was let go of; call when no answer is waiting on it. */
export function collectGarbage(): void {
  if (garbageBytes < COLLECT_AFTER_BYTES) return;
  garbageBytes = 0;
  collectNow();
}
