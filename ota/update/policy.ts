/**
 * Update policy: which release a device should take (newest eligible, staged
 * rollout by a hash of the device id), and when to look (jittered periods).
 *
 * @module
 */
export { compareVersions } from "../semver.ts";

/**
 * The device's position in a staged rollout of `version`, from 0 (inclusive)
 * to 100 (exclusive): the first 32 bits of SHA-256("<device id>\n<version>")
 * scaled. A device is in a rollout of P percent when its position is below
 * P, so raising P only adds devices, and each release samples a different
 * set of devices first.
 */
export async function rolloutPosition(deviceId: string, version: string): Promise<number> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${deviceId}\n${version}`)),
  );
  const n = new DataView(digest.buffer).getUint32(0);
  return (n / 2 ** 32) * 100;
}

/** Whether the device takes a release published with `rolloutPercent` (absent: everyone). */
export async function inRollout(
  deviceId: string,
  version: string,
  rolloutPercent: unknown,
): Promise<boolean> {
  if (rolloutPercent === undefined || rolloutPercent === null) return true;
  const p = Number(rolloutPercent);
  if (!Number.isFinite(p)) return false;
  return (await rolloutPosition(deviceId, version)) < p;
}

/**
 * A period with jitter: uniformly within ±`fraction` of `ms`, so a fleet that
 * booted together does not check in lockstep.
 */
export function jittered(ms: number, fraction = 0.2, random = Math.random): number {
  return Math.max(0, Math.round(ms * (1 - fraction + 2 * fraction * random())));
}

/** Short id for logs and file names. */
export function shortHash(hex: string): string {
  return hex.slice(0, 12);
}
