/**
 * Fuzz target `mqtt`: downlink command requests (`PREFIX/cmd/{command}`)
 * through `CommandRegistry.handle` (protocols/mqtt) with the built-in
 * commands' shapes registered. The input is `command\npayload`. The promise
 * (MQTT commands, docs/operators.md): every request gets an answer, nothing throws,
 * the answer is JSON that names the command and echoes a valid `id`.
 *
 * @module
 */
import { CommandError, CommandRegistry, stringParam } from "../../../protocols/mod.ts";
import { mutateJson, weirdValue } from "../_mutate.ts";
import type { Rng } from "../_prng.ts";
import { type FuzzTarget, type Harness, OracleViolation } from "../_target.ts";

const COMMANDS = ["ping", "update-check", "module-remove", "module-deploy"];
const SEEDS: [string, unknown][] = [
  ["ping", { id: "1" }],
  ["module-remove", { id: 7, name: "relay" }],
  ["module-deploy", { id: "x", name: "relay", version: "1.0.0" }],
  ["update-check", {}],
];
const enc = new TextEncoder();

function encode(command: string, payload: unknown): Uint8Array {
  return enc.encode(
    `${command}\n${typeof payload === "string" ? payload : JSON.stringify(payload)}`,
  );
}

function generate(rng: Rng): Uint8Array {
  const [cmd, body] = rng.pick(SEEDS);
  const command = rng.chance(0.9) ? cmd : String(weirdValue(rng)).slice(0, 80);
  const payload = rng.chance(0.5) ? mutateJson(rng, body) : {
    id: rng.chance(0.5) ? weirdValue(rng) : "r1",
    name: weirdValue(rng),
    version: weirdValue(rng),
  };
  return encode(command, payload);
}

function setup(): Promise<Harness> {
  const registry = new CommandRegistry();
  const installed = new Set(["relay"]);
  registry.register("ping", () => ({ pong: true, ts: new Date().toISOString() }));
  registry.register("module-remove", (params) => {
    const name = stringParam(params, "name");
    if (!installed.has(name)) {
      throw new CommandError("not_found", `no module ${JSON.stringify(name)}`);
    }
    return { removed: name };
  });
  registry.register("module-deploy", (params) => ({ name: stringParam(params, "name") }));
  registry.register("update-check", () => {
    throw new CommandError("unavailable", "no update server");
  });
  return Promise.resolve({
    seeds: SEEDS.map(([c, b]) => encode(c, b)),
    generate,
    async run(input) {
      const nl = input.indexOf(10);
      const command = new TextDecoder().decode(nl < 0 ? input : input.subarray(0, nl));
      const payload = nl < 0 ? new Uint8Array() : input.subarray(nl + 1);
      const res = await registry.handle(command, payload);
      let text: string;
      try {
        text = JSON.stringify(res);
      } catch (err) {
        throw new OracleViolation(`answer is not serialisable: ${(err as Error).message}`);
      }
      const back = JSON.parse(text);
      if (back.command !== command) throw new OracleViolation("answer names another command");
      if (typeof back.ok !== "boolean") throw new OracleViolation("answer has no ok flag");
      if (
        !back.ok &&
        (typeof back.error?.code !== "string" || typeof back.error?.message !== "string")
      ) {
        throw new OracleViolation(
          `failed answer without error code and message: ${text.slice(0, 200)}`,
        );
      }
      if (back.error?.code === "internal") {
        throw new OracleViolation(`request ended in an internal error: ${back.error.message}`);
      }
      if (!COMMANDS.includes(command) && back.ok) {
        throw new OracleViolation("unknown command answered ok");
      }
      return back.ok ? "accepted" : `refused:CommandError/${back.error.code}`;
    },
    classify: () => undefined, // handle() must never throw
  });
}

/** MQTT command requests through the command registry. */
export const mqttTarget: FuzzTarget = {
  name: "mqtt",
  description: "MQTT downlink command payloads (protocols/mqtt CommandRegistry.handle)",
  setup,
};
