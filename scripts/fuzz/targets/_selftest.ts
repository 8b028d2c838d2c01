/**
 * Target `_selftest`: inputs that misbehave on purpose (`hang`, `alloc`,
 * `crash`, `oracle`), so a test can show the runner detects each kind of
 * finding. Not run by default (names starting with `_` are skipped).
 *
 * @module
 */
import { type FuzzTarget, OracleViolation } from "../_target.ts";

const kept: Uint8Array[] = [];

/** Misbehaves as the input says. */
export const selftestTarget: FuzzTarget = {
  name: "_selftest",
  description: "inputs that hang, allocate, crash or break an oracle on purpose",
  setup: () =>
    Promise.resolve({
      seeds: [new TextEncoder().encode("ok")],
      run(input) {
        const what = new TextDecoder().decode(input);
        if (what === "hang") { while (true) { /* spin: the watchdog must stop it */ } }
        if (what === "alloc") {
          // Touch every page so the memory is resident, not just reserved.
          for (let i = 0; i < 12; i++) kept.push(new Uint8Array(64 * 2 ** 20).fill(1));
        }
        if (what === "crash") throw new TypeError("cannot read properties of undefined");
        if (what === "oracle") throw new OracleViolation("accepted what it must refuse");
        if (what === "refuse") throw new RangeError("documented");
        return Promise.resolve("accepted");
      },
      classify: (err) => err instanceof RangeError ? "RangeError" : undefined,
    }),
};
