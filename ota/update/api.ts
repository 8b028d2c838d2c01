/**
 * The update HTTP API (README.md, "HTTP API"), mounted at `/api/v1/update`
 * behind the runtime's bearer auth:
 *
 * - `GET /`: state, versions, slots, progress, last error
 * - `POST /check`: look for a newer release now
 * - `POST /apply`: check and install (202 at once; `?wait=1` answers when done)
 * - `POST /rollback`: go back to the previous slot and restart
 * - `POST /modules/{name}/deploy` (`?version=`): install a module from the repository
 * - `POST /models/{name}/deploy` (`?version=`): install a model from the repository (by delta
 *   from the installed version when the repository has one)
 *
 * Failures are thrown (each update error has its code and status) and
 * answered by the server's one error handler.
 *
 * @module
 */
import { Hono } from "hono";
import type { Updater } from "./updater.ts";

/** Builds the Hono sub-app over `updater`. */
export function updateApi(updater: Updater): Hono {
  const app = new Hono();

  app.get("/", async (c) => c.json(await updater.status()));

  app.post("/check", async (c) => c.json(await updater.check()));

  app.post("/apply", async (c) => {
    const run = updater.apply();
    if (c.req.query("wait") !== undefined) return c.json(await run);
    // The outcome shows in GET / (phase, progress, last_error).
    run.catch(() => {});
    return c.json({ accepted: true, phase: updater.phase }, 202);
  });

  app.post("/rollback", async (c) => {
    const s = await updater.rollback();
    return c.json({ rolled_back: s.last_rollback, active: s.active, restarting: true });
  });

  app.post(
    "/modules/:name/deploy",
    async (c) => c.json(await updater.deployModule(c.req.param("name"), c.req.query("version"))),
  );

  app.post(
    "/models/:name/deploy",
    async (c) => c.json(await updater.deployModel(c.req.param("name"), c.req.query("version"))),
  );

  return app;
}
