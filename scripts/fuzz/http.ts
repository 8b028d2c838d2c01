/**
 * The HTTP pass of the ingest fuzzer: bodies from the same generators sent
 * to a real edged (`POST /api/v1/data`), with lying or missing content types
 * and bodies over the limit. Every answer must be 202, or 400/413 with the
 * documented JSON error shape, or 503 `outbox_full` with `Retry-After` once
 * the pending cap is reached (the pass uplinks nothing); never any other 5xx,
 * and the process stays healthy.
 *
 * @module
 */
import { type EdgedProcess, startEdged } from "../../tests/_helpers/edged.ts";
import { havoc } from "./_mutate.ts";
import { Rng } from "./_prng.ts";
import { jsonBytes } from "./_target.ts";
import { generateIngest, INGEST_SEEDS } from "./targets/ingest.ts";

/** What the pass saw. */
export interface HttpPassResult {
  requests: number;
  /** Count per status code. */
  statuses: Record<string, number>;
  /** Answers that broke the contract, with the body that caused them (truncated). */
  problems: string[];
}

const TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "text/plain",
  "",
  "APPLICATION/JSON",
];

/** Sends `count` fuzzed requests to `edged` (or a fresh one) and checks every answer. */
export async function httpIngestPass(
  count: number,
  seed: number,
  edged?: EdgedProcess,
): Promise<HttpPassResult> {
  const own = edged === undefined;
  const e = edged ?? await startEdged();
  const seeds = INGEST_SEEDS.map(jsonBytes);
  const out: HttpPassResult = { requests: 0, statuses: {}, problems: [] };
  try {
    for (let i = 0; i < count; i++) {
      const rng = new Rng(seed, i, 0x477);
      let body: Uint8Array = rng.chance(0.5)
        ? jsonBytes(generateIngest(rng))
        : havoc(rng, rng.pick(seeds), seeds);
      if (rng.chance(0.02)) body = new Uint8Array(1024 * 1024 + rng.int(1, 1000)).fill(0x20);
      const type = rng.chance(0.9) ? "application/json" : rng.pick(TYPES);
      const res = await e.api("/api/v1/data", {
        method: "POST",
        headers: type ? { "content-type": type } : {},
        body: body as Uint8Array<ArrayBuffer>,
      });
      const text = await res.text();
      out.requests++;
      out.statuses[res.status] = (out.statuses[res.status] ?? 0) + 1;
      const show = new TextDecoder().decode(body.subarray(0, 200));
      if (res.status === 202) continue;
      const full = res.status === 503 && /"outbox_full"/.test(text) &&
        res.headers.get("retry-after") !== null;
      if (res.status !== 400 && res.status !== 413 && !full) {
        out.problems.push(`${res.status} ${text.slice(0, 200)} for ${show}`);
        continue;
      }
      try {
        const j = JSON.parse(text);
        if (typeof j.error?.code !== "string" || typeof j.error?.message !== "string") {
          out.problems.push(`${res.status} without the error shape: ${text.slice(0, 200)}`);
        }
      } catch {
        out.problems.push(`${res.status} with a non-JSON body: ${text.slice(0, 200)}`);
      }
    }
    const health = await fetch(e.url + "/healthz");
    await health.body?.cancel();
    if (health.status !== 200) {
      out.problems.push(`/healthz answered ${health.status} after the pass`);
    }
  } finally {
    if (own) {
      await e.stop();
      await Deno.remove(e.dataDir, { recursive: true });
    }
  }
  return out;
}
