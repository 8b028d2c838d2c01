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
  remove(name: string): Promise<void>;
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

  registry.register("module-remove", async (params) => {
    const name = stringParam(params, "name");
    if (!ctx.modules) throw new CommandError("unavailable", "this edged runs no module host");
    if (!ctx.modules.names().includes(name)) {
      throw new CommandError(
        "module_not_found",
        `no module named ${JSON.stringify(name)} is installed`,
      );
    }
    await ctx.modules.remove(name);
    return { removed: name };
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
