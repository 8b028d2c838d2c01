/**
 * The update HTTP API (MISSION.md "HTTP API"), mounted at `/api/v1/update`
 * behind the runtime's bearer auth:
 *
 * - `GET /`: state, versions, slots, progress, last error
 * - `POST /check`: look for a newer release now
 * - `POST /apply`: check and install (202 at once; `?wait=1` answers when done)
 * - `POST /rollback`: go back to the previous slot and restart
 * - `POST /modules/{name}/deploy` (`?version=`): install a module from the repository
 *
 * Errors answer `{"error": {"code", "message"}}` like the rest of the API.
 *
 * @module
 */
import { Hono } from "hono";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { TufError } from "../tuf/mod.ts";
import {
  DiskSpaceError,
  UpdateError,
  UpdateNotConfiguredError,
  UpdateStateError,
  UpdateTargetMissingError,
} from "./errors.ts";
import type { Updater } from "./updater.ts";

function fail(c: Context, status: ContentfulStatusCode, code: string, message: string) {
  return c.json({ error: { code, message } }, status);
}

/** Maps an update failure to its HTTP answer. */
function answerError(c: Context, err: unknown) {
  const msg = (err as Error).message;
  if (err instanceof UpdateNotConfiguredError) return fail(c, 409, "update_not_configured", msg);
  if (err instanceof UpdateStateError) return fail(c, 409, "update_state", msg);
  if (err instanceof UpdateTargetMissingError) return fail(c, 404, "not_found", msg);
  if (err instanceof DiskSpaceError) return fail(c, 507, "insufficient_storage", msg);
  if (err instanceof TufError) return fail(c, 502, "update_verification_failed", msg);
  if (err instanceof UpdateError) return fail(c, 502, "update_failed", msg);
  throw err;
}

/** Builds the Hono sub-app over `updater`. */
export function updateApi(updater: Updater): Hono {
  const app = new Hono();

  app.get("/", async (c) => c.json(await updater.status()));

  app.post("/check", async (c) => {
    try {
      return c.json(await updater.check());
    } catch (err) {
      return answerError(c, err);
    }
  });

  app.post("/apply", async (c) => {
    const run = updater.apply();
    if (c.req.query("wait") !== undefined) {
      try {
        return c.json(await run);
      } catch (err) {
        return answerError(c, err);
      }
    }
    // The outcome shows in GET / (phase, progress, last_error).
    run.catch(() => {});
    return c.json({ accepted: true, phase: updater.phase }, 202);
  });

  app.post("/rollback", async (c) => {
    try {
      const s = await updater.rollback();
      return c.json({ rolled_back: s.last_rollback, active: s.active, restarting: true });
    } catch (err) {
      return answerError(c, err);
    }
  });

  app.post("/modules/:name/deploy", async (c) => {
    try {
      return c.json(await updater.deployModule(c.req.param("name"), c.req.query("version")));
    } catch (err) {
      return answerError(c, err);
    }
  });

  return app;
}
