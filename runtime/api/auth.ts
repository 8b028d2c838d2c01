/**
 * Bearer-token authentication for everything under /api/v1/ (RFC 6750).
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { constantTimeEqual } from "../token.ts";
import { ApiError } from "./errors.ts";

const encoder = new TextEncoder();
const BEARER = /^Bearer[ ]+([^\s]+)\s*$/i;

/** Whether `given`'s UTF-8 bytes are `expected`, in a time that does not tell where they differ. */
function tokenEquals(given: string, expected: Uint8Array): boolean {
  for (let i = 0; i < given.length; i++) {
    if (given.charCodeAt(i) >= 0x80) return constantTimeEqual(encoder.encode(given), expected);
  }
  // ASCII, as every real token: its UTF-8 bytes are its char codes (none past its end).
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) diff |= expected[i] ^ (given.charCodeAt(i) | 0);
  return diff === 0;
}

/**
 * Whether an `Authorization` field value carries `token` (the check of
 * {@linkcode bearerAuth}, for the server's fast path).
 */
export function bearerMatcher(token: string): (header: string | undefined) => boolean {
  const expected = encoder.encode(token);
  return (header) => {
    if (!header) return false;
    const m = BEARER.exec(header);
    return m !== null && tokenEquals(m[1], expected);
  };
}

/** Middleware that answers 401 unless `Authorization: Bearer <token>` matches. */
export function bearerAuth(token: string): MiddlewareHandler {
  const matches = bearerMatcher(token);
  return async (c, next) => {
    const header = c.req.header("authorization");
    if (!header) {
      throw new ApiError(401, "unauthorized", "missing Authorization: Bearer token", {
        headers: { "WWW-Authenticate": 'Bearer realm="edged"' },
      });
    }
    if (!matches(header)) {
      throw new ApiError(401, "unauthorized", "invalid bearer token", {
        headers: { "WWW-Authenticate": 'Bearer realm="edged", error="invalid_token"' },
      });
    }
    await next();
  };
}
