/**
 * Structured, leveled logging: JSON lines when stdout is not a terminal
 * (journald, Docker, log shippers), readable colored text when it is. The
 * loggers are `lib/log.ts`'s; this installs their sinks. JSON lines are
 * written here; only the colored text loads LogTape, for its formatter.
 *
 * @module
 */
import { configureLogging, type LogLevel, type LogRecord } from "../lib/mod.ts";

function bare(v: unknown): string {
  if (typeof v === "string") return v;
  if (v instanceof Error) return v.message;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/**
 * One JSON object for a line of JSON Lines (without the newline, which
 * `console.log` adds). Unlike LogTape's own JSON formatter,
 * strings interpolated into the message are not quoted, so `message` reads
 * as a sentence; the values stay typed in `properties`.
 */
export function jsonLine(r: LogRecord): string {
  let message = "";
  r.message.forEach((part, i) => (message += i % 2 === 0 ? part as string : bare(part)));
  return JSON.stringify({
    "@timestamp": new Date(r.timestamp).toISOString(),
    level: r.level.toUpperCase(),
    logger: r.category.join("."),
    message,
    properties: r.properties,
  });
}

/** One log record as the dashboard shows it. */
export interface RecentLogLine {
  /** ISO 8601 time. */
  at: string;
  level: string;
  /** Dotted category, e.g. `edged.mqtt`. */
  logger: string;
  message: string;
}

const RECENT_CAPACITY = 200;
const recent: RecentLogLine[] = [];
let recentNext = 0;

/** Hides the user-info part of URLs (`mqtt://user:pass@host` → `mqtt://***@host`). */
function redactUrls(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi, "$1***@");
}

/** Keeps the last {@linkcode RECENT_CAPACITY} records in memory for `GET /api/v1/status`. */
function recentSink(r: LogRecord): void {
  let message = "";
  r.message.forEach((part, i) => (message += i % 2 === 0 ? part as string : bare(part)));
  const line = {
    at: new Date(r.timestamp).toISOString(),
    level: r.level,
    logger: r.category.join("."),
    message: redactUrls(message.length > 1024 ? `${message.slice(0, 1024)}…` : message),
  };
  // A fixed ring: no allocation growth on a chatty device.
  if (recent.length < RECENT_CAPACITY) recent.push(line);
  else recent[recentNext] = line;
  recentNext = (recentNext + 1) % RECENT_CAPACITY;
}

/** The most recent log records (at most `limit`, 200 kept), oldest first. */
export function recentLogs(limit = RECENT_CAPACITY): RecentLogLine[] {
  const ordered = recent.length < RECENT_CAPACITY
    ? recent.slice()
    : [...recent.slice(recentNext), ...recent.slice(0, recentNext)];
  return ordered.slice(Math.max(0, ordered.length - limit));
}

/** Options for {@linkcode setupLogging}. */
export interface LogOptions {
  /** Lowest level written. @default {"info"} */
  level?: LogLevel;
  /** `auto` picks JSON unless stdout is a terminal. @default {"auto"} */
  format?: "auto" | "json" | "text";
}

/** Configures the `edged` logger category; safe to call again (replaces the setup). */
export async function setupLogging(options: LogOptions = {}): Promise<void> {
  const { level = "info", format = "auto" } = options;
  const json = format === "json" || (format === "auto" && !Deno.stdout.isTerminal());
  let line = jsonLine;
  if (!json) {
    // LogTape's formatter ends each record with a newline, which console.log adds again.
    const ansi = (await import("@logtape/logtape")).getAnsiColorFormatter({ value: "bare" });
    line = (r) => ansi(r).replace(/\r?\n$/, "");
  }
  configureLogging({
    category: ["edged"],
    lowestLevel: level,
    sinks: [
      // Every level goes to stdout: one ordered stream for the service manager.
      (r) => console.log(line(r)),
      recentSink,
    ],
  });
}
