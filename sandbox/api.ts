/**
 * The modules HTTP API (README.md, "HTTP API"), a Hono sub-app the runtime
 * mounts at `/api/v1/modules` behind its bearer auth:
 * `GET /`, `GET|PUT|DELETE /{name}` (`DELETE` also deletes the module's kv
 * state unless `?keep_state=true`), `POST /{name}/messages`.
 * Failures are thrown (each error class has its code and status) and
 * answered by the server's one error handler.
 *
 * @module
 */

import { Hono } from "hono";
import { ApiError, bodyLimit, formWithin } from "../runtime/mod.ts";
import { ModuleValidationError } from "./errors.ts";
import type { ModuleHost } from "./module_host.ts";
import type { CallOutcome } from "./instance.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Largest module (wasm) `PUT` accepts. */
export const MAX_UPLOAD_BYTES = 32 * 1024 * 1024;
/** Largest `PUT` body: the module, its manifest and the multipart framing. */
const MAX_PUT_BODY = MAX_UPLOAD_BYTES + 1024 * 1024;
/** Parts of an install's body: `manifest` and `module`, with room for a client's extras. */
const MAX_PUT_PARTS = 8;

const badRequest = (message: string) => new ApiError(400, "bad_request", message);
const tooLarge = (message: string) => new ApiError(413, "payload_too_large", message);

/** Base64 of `bytes` of any size (a spread of megabytes into fromCharCode overflows the stack). */
function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** A published payload as JSON: parsed JSON, else text, else base64. */
function payloadJson(bytes: Uint8Array): Record<string, unknown> {
  try {
    const text = utf8.decode(bytes);
    try {
      return { payload: JSON.parse(text) };
    } catch {
      return { payload: text };
    }
  } catch {
    return { payload_base64: base64(bytes) };
  }
}

/**
 * Payload bytes one answer of `POST …/messages` carries; the payloads past it
 * are listed with their size only (`payload_omitted_bytes`), so a module that
 * publishes megabytes cannot make the answer (escaped JSON: up to 6 × the
 * bytes) a memory bomb.
 */
export const ANSWER_PAYLOAD_BYTES = 1024 * 1024;

/** The JSON answer of a message delivery. */
export function outcomeJson(out: CallOutcome): Record<string, unknown> {
  let budget = ANSWER_PAYLOAD_BYTES;
  return {
    status: out.status,
    published: out.published.map((p) => {
      if (p.payload.length > budget) {
        budget = 0;
        return { topic: p.topic, payload_omitted_bytes: p.payload.length };
      }
      budget -= p.payload.length;
      return { topic: p.topic, ...payloadJson(p.payload) };
    }),
    logs: out.logs,
    fuel_used: out.fuelUsed,
    ...(out.error ? { error: { code: out.error.kind, message: out.error.message } } : {}),
  };
}

/** What the modules API needs of a host: a {@linkcode ModuleHost} or the component's lazy one. */
export type ModulesApiHost = Pick<
  ModuleHost,
  "names" | "status" | "install" | "checkModule" | "remove" | "deliver"
>;

/** Builds the Hono app of the modules API over `host`. */
export function modulesApi(host: ModulesApiHost): Hono {
  const app = new Hono();

  app.get("/", (c) => c.json({ modules: host.names().map((n) => host.status(n)) }));
  app.get("/:name", (c) => c.json(host.status(c.req.param("name"))));

  // The body streams through its limit (runtime/api/body_limit.ts), so a
  // refused upload, chunked or not, costs at most MAX_PUT_BODY in memory.
  app.put("/:name", bodyLimit(MAX_PUT_BODY), async (c) => {
    const name = c.req.param("name");
    const form = await formWithin(
      c.req,
      MAX_PUT_PARTS,
      "multipart/form-data with parts manifest and module",
    );
    const manifestPart = form.get("manifest");
    const modulePart = form.get("module");
    if (manifestPart === null) throw badRequest("part manifest is missing");
    if (!(modulePart instanceof File)) {
      throw badRequest("part module (the wasm file) is missing");
    }
    if (modulePart.size > MAX_UPLOAD_BYTES) {
      throw tooLarge(`module is ${modulePart.size} bytes, at most ${MAX_UPLOAD_BYTES}`);
    }
    const manifestText = typeof manifestPart === "string"
      ? manifestPart
      : await manifestPart.text();
    const bytes = new Uint8Array(await modulePart.arrayBuffer());
    let manifest: unknown;
    try {
      manifest = JSON.parse(manifestText);
    } catch (err) {
      throw new ModuleValidationError([
        `manifest is not valid JSON: ${(err as Error).message}`,
        ...(await host.checkModule(bytes)),
      ]);
    }
    const existed = host.names().includes(name);
    const status = await host.install(manifest, bytes, name);
    return c.json(status, existed ? 200 : 201);
  });

  app.delete("/:name", async (c) => {
    const keep = c.req.query("keep_state");
    if (keep !== undefined && keep !== "true" && keep !== "false") {
      throw badRequest(`keep_state must be true or false, got "${keep}"`);
    }
    await host.remove(c.req.param("name"), { keepState: keep === "true" });
    return c.body(null, 204);
  });

  app.post("/:name/messages", async (c) => {
    const name = c.req.param("name");
    host.status(name); // 404 before reading the body
    let body: { topic?: unknown; payload?: unknown };
    try {
      body = await c.req.json();
    } catch {
      throw badRequest('body must be JSON {"topic": "...", "payload": <any JSON>}');
    }
    if (typeof body?.topic !== "string" || body.topic.length === 0) {
      throw badRequest("topic must be a non-empty string");
    }
    const payload = new TextEncoder().encode(JSON.stringify(body.payload ?? null));
    return c.json(outcomeJson(await host.deliver(name, body.topic, payload)));
  });

  return app;
}
