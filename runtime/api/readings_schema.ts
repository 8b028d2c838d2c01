/**
 * Validation of `POST /api/v1/data` bodies (README.md, "HTTP API"): one
 * reading or a non-empty array of them. Hand-written rather than a schema
 * library because it runs on every reading of the hot path, and because each
 * problem must name its field (`[3].timestamp`) and the rule.
 *
 * @module
 */
import type { Reading } from "../readings.ts";
import { ApiError, type ErrorDetail } from "./errors.ts";

/** Identifiers become MQTT topic levels, so no `/`, `+`, `#` or spaces. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
const MAX_NAME = 128;
/** Metric used when a reading names none. */
export const DEFAULT_METRIC = "value";
/** Numbers below this are seconds, at or above it milliseconds (1e11 s is year 5138). */
const SECONDS_LIMIT = 1e11;
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
const ALLOWED = new Set(["device_id", "metric", "value", "timestamp"]);

/** Limits applied while validating. */
export interface ReadingRules {
  /** Most readings in one request. */
  maxBatch: number;
  /** How far past `now` a timestamp may lie, in ms. */
  maxFutureMs: number;
  /** The current time in ms (injected for tests). */
  now: number;
}

function checkName(v: unknown, field: string, problems: ErrorDetail[]): string | undefined {
  if (typeof v !== "string") {
    problems.push({ field, message: "must be a string" });
  } else if (v.length === 0 || v.length > MAX_NAME) {
    problems.push({ field, message: `must be 1 to ${MAX_NAME} characters, got ${v.length}` });
  } else if (!NAME_RE.test(v)) {
    problems.push({
      field,
      message: "may contain only A-Z a-z 0-9 . _ : - and must start with a letter or digit",
    });
  } else {
    return v;
  }
}

/** Parses an RFC 3339 date-time into UTC ms, or NaN when it is not a real instant. */
export function parseRfc3339(s: string): number {
  const m = RFC3339.exec(s);
  if (!m) return NaN;
  const [, y, mo, d, h, mi, sec] = m.map(Number);
  if (mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 60) return NaN;
  const daysInMonth = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  if (d < 1 || d > daysInMonth) return NaN;
  const ms = Date.parse(s.replace(" ", "T"));
  return Number.isFinite(ms) ? ms : NaN;
}

/** ISO form of `ms`, or the raw number past the Date range (±8.64e15 ms), where toISOString throws. */
function describeMs(ms: number): string {
  return Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : `${ms} ms since the epoch`;
}

function checkTimestamp(
  v: unknown,
  field: string,
  rules: ReadingRules,
  problems: ErrorDetail[],
): number | undefined {
  let ms: number;
  if (v === undefined) return rules.now;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) {
      problems.push({ field, message: "must be a finite number" });
      return;
    }
    ms = Math.round(Math.abs(v) < SECONDS_LIMIT ? v * 1000 : v);
  } else if (typeof v === "string") {
    ms = parseRfc3339(v);
    if (Number.isNaN(ms)) {
      problems.push({
        field,
        message: "must be seconds or milliseconds since the epoch, or an RFC 3339 date-time",
      });
      return;
    }
  } else {
    problems.push({ field, message: "must be a number or an RFC 3339 string" });
    return;
  }
  if (ms < 0) {
    problems.push({ field, message: "must not be before 1970-01-01T00:00:00Z" });
    return;
  }
  if (ms > rules.now + rules.maxFutureMs) {
    problems.push({
      field,
      message: `must not be more than ${
        Math.round(rules.maxFutureMs / 1000)
      } s in the future (got ${describeMs(ms)})`,
    });
    return;
  }
  return ms;
}

function checkOne(
  item: unknown,
  prefix: string,
  rules: ReadingRules,
  problems: ErrorDetail[],
): Reading | undefined {
  if (typeof item !== "object" || item === null || Array.isArray(item)) {
    problems.push({ field: prefix.slice(0, -1) || "body", message: "must be a JSON object" });
    return;
  }
  const o = item as Record<string, unknown>;
  const before = problems.length;
  for (const key of Object.keys(o)) {
    if (!ALLOWED.has(key)) {
      problems.push({
        // A client's key is echoed in the answer: at most 64 characters of it.
        field: prefix + (key.length > 64 ? `${key.slice(0, 64)}...` : key),
        message: "unknown field (allowed: device_id, metric, value, timestamp)",
      });
    }
  }
  const device_id = o.device_id === undefined
    ? void problems.push({ field: prefix + "device_id", message: "is required" })
    : checkName(o.device_id, prefix + "device_id", problems);
  const metric = o.metric === undefined
    ? DEFAULT_METRIC
    : checkName(o.metric, prefix + "metric", problems);
  let value: number | undefined;
  if (o.value === undefined) {
    problems.push({ field: prefix + "value", message: "is required" });
  } else if (typeof o.value !== "number") {
    problems.push({ field: prefix + "value", message: "must be a number" });
  } else if (!Number.isFinite(o.value)) {
    problems.push({ field: prefix + "value", message: "must be a finite number" });
  } else {
    value = o.value;
  }
  const timestamp = checkTimestamp(o.timestamp, prefix + "timestamp", rules, problems);
  if (problems.length > before) return;
  return { device_id: device_id!, metric: metric!, value: value!, timestamp: timestamp! };
}

/** Most problems listed in one answer; the rest are counted. */
const MAX_DETAILS = 20;

/**
 * Validates a parsed body; returns the readings or throws a 400
 * {@linkcode ApiError} listing every problem (first one in `field`).
 */
export function parseReadings(body: unknown, rules: ReadingRules): Reading[] {
  const problems: ErrorDetail[] = [];
  const out: Reading[] = [];
  if (Array.isArray(body)) {
    if (body.length === 0) {
      throw new ApiError(400, "invalid_body", "body is an empty array; send at least one reading", {
        field: "body",
      });
    }
    if (body.length > rules.maxBatch) {
      throw new ApiError(
        400,
        "batch_too_large",
        `body holds ${body.length} readings; at most ${rules.maxBatch} are allowed per request`,
        { field: "body" },
      );
    }
    for (let i = 0; i < body.length; i++) {
      const r = checkOne(body[i], `[${i}].`, rules, problems);
      if (r) out.push(r);
    }
  } else {
    const r = checkOne(body, "", rules, problems);
    if (r) out.push(r);
  }
  if (problems.length > 0) {
    const first = problems[0];
    const more = problems.length > MAX_DETAILS ? ` (${problems.length} problems in all)` : "";
    throw new ApiError(400, "invalid_field", `${first.field} ${first.message}${more}`, {
      field: first.field,
      details: problems.slice(0, MAX_DETAILS),
    });
  }
  return out;
}
