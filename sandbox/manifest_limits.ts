/**
 * The hard ceilings of a module manifest's limits and the one default that
 * depends on another limit: plain values, apart from the manifest's zod schema
 * (`manifest.ts`), for the code that needs them without parsing a manifest.
 *
 * @module
 */
import { deviceMemoryBytes } from "../lib/mod.ts";

/** Hard ceilings no manifest may exceed, whatever it asks for. */
export const CEILINGS = {
  /** 4 GiB: all a 32-bit memory can address. */
  memoryBytes: 65536 * 65536,
  fuelPerMessage: 10_000_000_000,
  maxPayloadBytes: 16 * 1024 * 1024,
  messagesPerSecond: 100_000,
  kvMaxBytes: 64 * 1024 * 1024,
  /** One kv value: also the most the Worker's shared buffer grows to for a kv_get. */
  kvMaxValueBytes: 16 * 1024 * 1024,
  publishMessagesPerCall: 10_000,
  /** What one call may publish in all (topics and payloads): what one message may make the runtime hold. */
  publishBytesPerCall: 32 * 1024 * 1024,
  publishMessagesPerSecond: 100_000,
  publishBytesPerSecond: 256 * 1024 * 1024,
  backlog: 1_000_000_000,
} as const;

/**
 * `limits.publish_bytes_per_call` when the manifest does not say: 1 MiB, or
 * room for one largest payload with a topic of up to 4 KiB.
 */
export function defaultPublishBytesPerCall(maxPayloadBytes: number): number {
  return Math.max(1024 * 1024, maxPayloadBytes + 4096);
}

/**
 * The memory the installed modules may use together (`modules.memory_budget_bytes`):
 * `configured`, or when unset half of the device's memory (or of edged's
 * cgroup limit, if lower; 1 GiB when neither can be read).
 */
export function moduleMemoryBudget(configured?: number): number {
  if (configured !== undefined) return configured;
  const device = deviceMemoryBytes();
  return device === undefined ? 1 << 30 : Math.floor(device / 2);
}
