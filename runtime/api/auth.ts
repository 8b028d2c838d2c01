/**
 * Bearer-token authentication for everything under /api/v1/ (RFC 6750).
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { constantTimeEqual } from "../token.ts";
import { ApiError } from "./errors.ts";

const encoder = new TextEncoder();

/** Middleware that answers 401 unless `Authorization: Bearer <token>` matches. */
export function bearerAuth(token: string): MiddlewareHandler {
  const expected = encoder.encode(token);
  return async (c, next) => {
    const header = c.req.header("authorization");
    const challenge = { "WWW-Authenticate": 'Bearer realm="edged"' };
    if (!header) {
      throw new ApiError(401, "unauthorized", "missing Authorization: Bearer token", {
        headers: challenge,
      });
    }
    const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
    if (!m || !constantTimeEqual(encoder.encode(m[1]), expected)) {
      throw new ApiError(401, "unauthorized", "invalid bearer token", {
        headers: { "WWW-Authenticate": 'Bearer realm="edged", error="invalid_token"' },
      });
    }
    await next();
  };
}
