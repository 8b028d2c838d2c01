/**
 * The models HTTP API (MISSION.md "HTTP API"), a Hono sub-app the runtime
 * mounts at `/api/v1/models` behind its bearer auth: `GET /` (every model
 * and the engine's state), `GET|PUT|DELETE /{name}`. `PUT` takes
 * `multipart/form-data` with the ONNX file in part `model` and optional
 * fields `version` and `max_elements`; a model the engine cannot load gets
 * 422 with the reason. Errors answer `{"error": {"code", "message", "details"?}}`.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ModelInvalidError, ModelNotFoundError } from "./errors.ts";
import type { NnService } from "./service.ts";

/** Largest upload `PUT` reads (the service's `maxModelBytes` applies to the file itself). */
export const MAX_MODEL_UPLOAD_BYTES = 256 * 1024 * 1024;

function fail(
  c: Context,
  status: ContentfulStatusCode,
  code: string,
  message: string,
  details?: string[],
) {
  return c.json({ error: { code, message, ...(details ? { details } : {}) } }, status);
}

/** Builds the Hono app of the models API over `nn`. */
export function modelsApi(nn: NnService): Hono {
  const app = new Hono();

  app.onError((err, c) => {
    if (err instanceof ModelNotFoundError) return fail(c, 404, "model_not_found", err.message);
    if (err instanceof ModelInvalidError) {
      return fail(c, 422, "model_invalid", err.message, [err.reason]);
    }
    throw err;
  });

  app.get("/", async (c) => c.json({ models: await nn.list(), engine: await nn.engineStatus() }));
  app.get("/:name", async (c) => c.json(await nn.get(c.req.param("name"))));

  app.put("/:name", async (c) => {
    const name = c.req.param("name");
    const length = Number(c.req.header("content-length") ?? "0");
    if (length > MAX_MODEL_UPLOAD_BYTES) {
      return fail(
        c,
        413,
        "payload_too_large",
        `upload is ${length} bytes, at most ${MAX_MODEL_UPLOAD_BYTES}`,
      );
    }
    let form: FormData;
    try {
      form = await c.req.formData();
    } catch {
      return fail(c, 400, "bad_request", "body must be multipart/form-data with a part model");
    }
    const part = form.get("model");
    if (!(part instanceof File)) {
      return fail(c, 400, "bad_request", "part model (the ONNX file) is missing");
    }
    const version = form.get("version");
    const maxElements = form.get("max_elements");
    if (version !== null && typeof version !== "string") {
      return fail(c, 400, "bad_request", "field version must be text");
    }
    let max: number | undefined;
    if (maxElements !== null) {
      max = Number(maxElements);
      if (typeof maxElements !== "string" || !Number.isInteger(max)) {
        return fail(
          c,
          400,
          "bad_request",
          `field max_elements must be an integer, got ${maxElements}`,
        );
      }
    }
    const existed = (await nn.list()).some((m) => m.name === name);
    const status = await nn.install(name, new Uint8Array(await part.arrayBuffer()), {
      version: version ?? undefined,
      maxElements: max,
    });
    return c.json(status, existed ? 200 : 201);
  });

  app.delete("/:name", async (c) => {
    await nn.remove(c.req.param("name"));
    return c.body(null, 204);
  });

  return app;
}
