/**
 * Over-the-air updates: TUF metadata, deltas, downloads and A/B slots.
 *
 * @module
 */
export * from "./delta/mod.ts";
export * from "./tuf/mod.ts";
export * from "./repo/mod.ts";
export * from "./update/mod.ts";
export * from "./contract.ts";
