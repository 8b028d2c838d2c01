/**
 * The commands edged answers by itself: `ping`, `module-remove`, and
 * placeholders for `update-check` and `module-deploy` that answer
 * `unavailable` until the update pipeline registers the real handlers.
 *
 * @module
 */
import { CommandError, type CommandRegistry, stringParam } from "./commands.ts";

/** What `module-remove` needs from the module host. */
export interface ModuleRemover {
  /** Unloads and deletes a module, and its kv state unless `keepState`. */
  remove(name: string, options: { keepState: boolean }): Promise<void>;
  names(): string[];
}

/** Facts `ping` reports. */
export interface BuiltinContext {
  version: string;
  startedAt: number;
  modules?: ModuleRemover;
}

/** Registers the built-in commands in `registry`. */
export function builtinCommands(registry: CommandRegistry, ctx: BuiltinContext): void {
  registry.register("ping", () => ({
    pong: true,
    version: ctx.version,
    uptime_s: Math.round((Date.now() - ctx.startedAt) / 1000),
    ts: new Date().toISOString(),
  }));

  // Keeps the module's kv state unless the request says `"keep_state": false`
  // (the HTTP API's DELETE deletes it by default: a bearer of the token is the
  // operator; a command is whoever the broker let publish).
  registry.register("module-remove", async (params) => {
    const name = stringParam(params, "name");
    const keep = params.keep_state ?? true;
    if (typeof keep !== "boolean") {
      throw new CommandError("invalid_params", "parameter 'keep_state' must be true or false");
    }
    if (!ctx.modules) throw new CommandError("unavailable", "this edged runs no module host");
    if (!ctx.modules.names().includes(name)) {
      throw new CommandError(
        "module_not_found",
        `no module named ${JSON.stringify(name)} is installed`,
      );
    }
    await ctx.modules.remove(name, { keepState: keep });
    return { removed: name, kept_state: keep };
  });

  for (const name of ["update-check", "module-deploy"]) {
    registry.register(name, () => {
      throw new CommandError(
        "unavailable",
        `'${name}' needs the update pipeline, which this build does not have yet`,
      );
    });
  }
}
