/**
 * What a fuzz target provides, and how one input becomes one outcome.
 *
 * A target runs the real parser or validator in-process. An input ends in
 * one of three ways: accepted, refused with a documented error (the label
 * names the class and code, e.g. `DeltaError/bad-magic`), or a finding:
 * any other exception (a TypeError from deep inside a parser counts), an
 * {@link OracleViolation} (accepted something it must not), a hang past the
 * per-input bound or memory past the bound (both detected by the runner).
 *
 * @module
 */
import { havoc } from "./_mutate.ts";
import { Rng } from "./_prng.ts";

/** A target's live state in one worker. */
export interface Harness {
  /** Valid inputs; run as they are first, then mutated. */
  seeds: Uint8Array[];
  /** Structure-aware generator (lying fields, wrong types, re-signed metadata, ...). */
  generate?(rng: Rng): Uint8Array;
  /**
   * Turns a generated input into the bytes it stands for, when generation
   * needs async work (signing); findings then hold self-contained bytes.
   */
  expand?(input: Uint8Array): Promise<Uint8Array>;
  /** Runs one input; returns `accepted` or a label; throws on refusal. */
  run(input: Uint8Array): Promise<string>;
  /** Label for a documented error (`Class/code`), or undefined when `err` is a finding. */
  classify(err: unknown): string | undefined;
  /** Frees what setup made (temp dirs). */
  close?(): Promise<void>;
}

/** A fuzz target: a name, a one-line description and a setup. */
export interface FuzzTarget {
  name: string;
  description: string;
  setup(): Promise<Harness>;
}

/** The input accepted, but a property it must hold is broken (e.g. an accepted reading with NaN). */
export class OracleViolation extends Error {
  /** Builds the violation; the message states the property and the value. */
  constructor(message: string) {
    super(message);
    this.name = "OracleViolation";
  }
}

/** Share of inputs taken from the structure-aware generator when a target has one. */
const GENERATED_SHARE = 0.4;

/** Input number `index` of a run with `seed`: a pure function of the two. */
export function inputAt(h: Harness, seed: number, index: number): Uint8Array {
  if (index < h.seeds.length) return h.seeds[index];
  const rng = new Rng(seed, index);
  if (h.generate && rng.chance(GENERATED_SHARE)) {
    const g = h.generate(rng);
    return rng.chance(0.25) ? havoc(rng, g, h.seeds) : g;
  }
  return havoc(rng, rng.pick(h.seeds), h.seeds);
}

/** How one input ended, short of a hang or memory finding. */
export type Outcome =
  | { kind: "ok"; label: string }
  | { kind: "crash" | "oracle"; label: string; message: string; stack?: string };

/** Runs one input through `h` and classifies the result. */
export async function runOne(h: Harness, input: Uint8Array): Promise<Outcome> {
  try {
    return { kind: "ok", label: await h.run(input) };
  } catch (err) {
    if (err instanceof OracleViolation) {
      return { kind: "oracle", label: "OracleViolation", message: err.message, stack: err.stack };
    }
    const label = h.classify(err);
    if (label !== undefined) return { kind: "ok", label: `refused:${label}` };
    const e = err instanceof Error ? err : new Error(String(err));
    return { kind: "crash", label: e.name, message: e.message, stack: e.stack };
  }
}

/** `Name/code` of an error with a string `code`, else its name. */
export function errorLabel(err: Error & { code?: unknown }): string {
  return typeof err.code === "string" ? `${err.name}/${err.code}` : err.name;
}

/** UTF-8 bytes of `JSON.stringify(v)`. */
export function jsonBytes(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}
