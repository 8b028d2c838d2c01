/**
 * The models HTTP API (README.md, "HTTP API"), a Hono sub-app the runtime
 * mounts at `/api/v1/models` behind its bearer auth: `GET /` (every model
 * and the engine's state), `GET|PUT|DELETE /{name}`. `PUT` takes
 * `multipart/form-data` with the ONNX file in part `model` and optional
 * fields `version` and `max_elements`; a model the engine cannot load gets
 * 422 `model_invalid` with the reason. Failures are thrown (each error class
 * has its code and status) and answered by the server's one error handler.
 *
 * @module
 */

import { Hono } from "hono";
import { ApiError, bodyLimit, formWithin } from "../../runtime/mod.ts";
import type { NnService } from "./service.ts";

/** What the models API uses of the service (the component's lazy one, or an {@link NnService}). */
export type ModelsApiService = Pick<
  NnService,
  "list" | "get" | "install" | "remove" | "engineStatus"
>;

/** Largest upload `PUT` reads (the service's `maxModelBytes` applies to the file itself). */
export const MAX_MODEL_UPLOAD_BYTES = 256 * 1024 * 1024;
/** Parts of an install's body: `model`, `version`, `max_elements`, with room for extras. */
const MAX_PARTS = 8;

const badRequest = (message: string) => new ApiError(400, "bad_request", message);

/** Builds the Hono app of the models API over `nn`. */
export function modelsApi(nn: ModelsApiService): Hono {
  const app = new Hono();

  app.get("/", async (c) => c.json({ models: await nn.list(), engine: await nn.engineStatus() }));
  app.get("/:name", async (c) => c.json(await nn.get(c.req.param("name"))));

  // The body streams through its limit (runtime/api/body_limit.ts): a larger
  // upload, chunked or not, gets 413 without being kept in memory.
  app.put("/:name", bodyLimit(MAX_MODEL_UPLOAD_BYTES), async (c) => {
    const name = c.req.param("name");
    const form = await formWithin(c.req, MAX_PARTS, "multipart/form-data with a part model");
    const part = form.get("model");
    if (!(part instanceof File)) throw badRequest("part model (the ONNX file) is missing");
    const version = form.get("version");
    if (version !== null && typeof version !== "string") {
      throw badRequest("field version must be text");
    }
    const maxElements = form.get("max_elements");
    let max: number | undefined;
    if (maxElements !== null) {
      max = Number(maxElements);
      if (typeof maxElements !== "string" || !Number.isInteger(max)) {
        throw badRequest(`field max_elements must be an integer, got ${maxElements}`);
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
