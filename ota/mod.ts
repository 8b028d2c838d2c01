/**
 * Over-the-air updates: TUF metadata, deltas, downloads and A/B slots.
 *
 * @module
 */
export * from "./delta/mod.ts";
