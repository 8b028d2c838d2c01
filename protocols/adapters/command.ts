/**
 * The MQTT command `adapter-write`: how a broker client writes a machine's
 * point, under the command trust model (docs/operators.md, "Trust"). The
 * command registry has already applied the allow-list (the command is off
 * unless `mqtt.commands.allow` lists it) and the rate per command; this
 * handler checks the parameters and writes through
 * {@linkcode AdaptersComponent.write}, so the point must be `writable`, the
 * outcome is counted and published on `devices/{adapter}/{metric}/set/result`
 * like a module's write (not for a point that does not exist), and a failure
 * answers with its `AdapterError` code. Each write is logged: a broker client
 * drove a physical output.
 *
 * @module
 */
import { getLogger } from "../../lib/mod.ts";
import { CommandError, type CommandHandler, stringParam } from "../mqtt/mod.ts";
import { type AdaptersComponent, isPointValue } from "./component.ts";

const log = getLogger(["edged", "adapters", "command"]);

/** A requester's string as a log field: names are short, a made-up one need not be. */
const clip = (s: string, max = 64) => s.length > max ? `${s.slice(0, max)}...` : s;

/** The command's name: requests arrive on `PREFIX/cmd/adapter-write`. */
export const ADAPTER_WRITE_COMMAND = "adapter-write";

/**
 * The handler of `adapter-write`: `{"id", "adapter", "metric", "value"}`
 * writes `value` (a finite number or `true`/`false`) to the point `metric`
 * of the adapter named `adapter`, and answers `{"adapter", "metric", "value"}`
 * once the device has confirmed it.
 *
 * @example
 * ```ts ignore
 * mqtt.registerCommand(ADAPTER_WRITE_COMMAND, adapterWriteCommand(adapters));
 * ```
 */
export function adapterWriteCommand(adapters: Pick<AdaptersComponent, "write">): CommandHandler {
  return async (params) => {
    const adapter = stringParam(params, "adapter");
    const metric = stringParam(params, "metric");
    const value = params.value;
    if (!isPointValue(value)) {
      throw new CommandError(
        "invalid_params",
        "parameter 'value' must be a finite number or true/false",
      );
    }
    const id = typeof params.id === "string" || typeof params.id === "number"
      ? params.id
      : undefined;
    const where = {
      adapter: clip(adapter),
      metric: clip(metric),
      value: String(value),
      id: clip(String(id ?? "")),
    };
    try {
      await adapters.write(adapter, metric, value, {
        source: `command:${ADAPTER_WRITE_COMMAND}`,
        id,
      });
    } catch (err) {
      log.warning("adapter-write {id} of {adapter}/{metric} = {value} failed: {error}", {
        ...where,
        error: clip(String((err as Error)?.message ?? err), 256),
      });
      throw err;
    }
    // A broker client drove a physical output: leave a trace (the command's
    // rate bounds how many).
    log.info("adapter-write {id} wrote {adapter}/{metric} = {value}", where);
    return { adapter, metric, value };
  };
}
