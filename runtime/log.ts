/**
 * Structured, leveled logging through LogTape: JSON lines when stdout is not a
 * terminal (journald, Docker, log shippers), readable colored text when it is.
 *
 * @module
 */
import {
  configure,
  getAnsiColorFormatter,
  getConsoleSink,
  type LogLevel,
  type LogRecord,
  reset,
} from "@logtape/logtape";

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
 * One JSON object per line (JSON Lines). Unlike LogTape's own JSON formatter,
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
  }) + "\n";
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
  await reset();
  await configure({
    sinks: {
      // Every level goes to stdout: one ordered stream for the service manager.
      stdout: getConsoleSink({
        formatter: json ? jsonLine : getAnsiColorFormatter({ value: "bare" }),
        levelMap: {
          trace: "log",
          debug: "log",
          info: "log",
          warning: "log",
          error: "log",
          fatal: "log",
        },
      }),
    },
    loggers: [
      { category: ["edged"], lowestLevel: level, sinks: ["stdout"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stdout"] },
    ],
  });
}
