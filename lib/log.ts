/**
 * The loggers every part of edged writes through: `getLogger(["edged", …])`
 * and one call per record, a message template with `{name}` placeholders and
 * the properties that fill them, as in LogTape (whose record shape and
 * template rules these are, so its formatters read these records). Records go
 * to the sinks `runtime/log.ts` installs with {@linkcode configureLogging};
 * until then, and for categories outside the configured one, they go nowhere.
 *
 * It is a module of its own rather than LogTape itself so that an edged that
 * logs JSON lines (a service: stdout is not a terminal) loads no logging
 * library: LogTape, with the `node:util` it imports, is about 2 MiB of
 * resident memory, which `runtime/log.ts` loads only for the colored text a
 * terminal gets.
 *
 * @module
 */

/** Severity, lowest first. */
export type LogLevel = "trace" | "debug" | "info" | "warning" | "error" | "fatal";

const RANK: Record<LogLevel, number> = {
  trace: 0,
  debug: 1,
  info: 2,
  warning: 3,
  error: 4,
  fatal: 5,
};

/** One log record (LogTape's shape). */
export interface LogRecord {
  readonly category: readonly string[];
  readonly level: LogLevel;
  /** Text and values in turn: text at even indexes, the placeholders' values at odd ones. */
  readonly message: readonly unknown[];
  /** The template as written. */
  readonly rawMessage: string;
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
  readonly properties: Record<string, unknown>;
}

/** Where records go. */
export type Sink = (record: LogRecord) => void;

/** What {@linkcode getLogger} gives: one method per level. */
export interface Logger {
  readonly category: readonly string[];
  trace(message: string, properties?: Record<string, unknown>): void;
  debug(message: string, properties?: Record<string, unknown>): void;
  info(message: string, properties?: Record<string, unknown>): void;
  /** Same as {@linkcode Logger.warning}. */
  warn(message: string, properties?: Record<string, unknown>): void;
  warning(message: string, properties?: Record<string, unknown>): void;
  error(message: string, properties?: Record<string, unknown>): void;
  fatal(message: string, properties?: Record<string, unknown>): void;
}

/** What {@linkcode configureLogging} sets. */
export interface LoggingSetup {
  /** Records of this category and those under it are written. */
  category: readonly string[];
  /** Lowest level written. */
  lowestLevel: LogLevel;
  /** Each record goes to every sink, in order. */
  sinks: Sink[];
}

let setup: LoggingSetup | undefined;

/** Installs the sinks (replacing any earlier setup); `undefined` drops every record again. */
export function configureLogging(next: LoggingSetup | undefined): void {
  setup = next && { ...next, category: [...next.category], sinks: [...next.sinks] };
}

function within(category: readonly string[], root: readonly string[]): boolean {
  if (category.length < root.length) return false;
  for (let i = 0; i < root.length; i++) if (category[i] !== root[i]) return false;
  return true;
}

/** `template`'s text and values in turn (LogTape's rules: `{{`/`}}` escape a brace). */
export function renderTemplate(template: string, properties: Record<string, unknown>): unknown[] {
  if (template.length === 0) return [""];
  if (!template.includes("{")) return [template];
  const unescape = (s: string) => s.replace(/{{/g, "{").replace(/}}/g, "}");
  const message: unknown[] = [];
  let start = 0;
  for (let i = 0; i < template.length; i++) {
    const ch = template[i];
    if (ch === "{") {
      if (template[i + 1] === "{") {
        i++;
        continue;
      }
      const close = template.indexOf("}", i + 1);
      if (close === -1) continue;
      message.push(unescape(template.slice(start, i)));
      const key = template.slice(i + 1, close);
      const trimmed = key.trim();
      message.push(
        trimmed === "*"
          ? (key in properties ? properties[key] : "*" in properties ? properties["*"] : properties)
          : key in properties
          ? properties[key]
          : properties[trimmed],
      );
      i = close;
      start = i + 1;
    } else if (ch === "}" && template[i + 1] === "}") i++;
  }
  message.push(unescape(template.slice(start)));
  return message;
}

function emit(
  category: readonly string[],
  level: LogLevel,
  rawMessage: string,
  properties: Record<string, unknown> = {},
): void {
  const s = setup;
  if (!s || RANK[level] < RANK[s.lowestLevel] || !within(category, s.category)) return;
  const record: LogRecord = {
    category,
    level,
    message: renderTemplate(rawMessage, properties),
    rawMessage,
    timestamp: Date.now(),
    properties,
  };
  for (const sink of s.sinks) {
    try {
      sink(record);
    } catch {
      // A sink that fails (stdout gone) must not fail the code that logs.
    }
  }
}

const loggers = new Map<string, Logger>();

/** The logger of `category` (e.g. `["edged", "mqtt"]`). */
export function getLogger(category: string | readonly string[]): Logger {
  const cat = typeof category === "string" ? [category] : [...category];
  const key = cat.join("\0");
  let logger = loggers.get(key);
  if (!logger) {
    const at = (level: LogLevel) => (message: string, properties?: Record<string, unknown>) =>
      emit(cat, level, message, properties);
    logger = {
      category: cat,
      trace: at("trace"),
      debug: at("debug"),
      info: at("info"),
      warn: at("warning"),
      warning: at("warning"),
      error: at("error"),
      fatal: at("fatal"),
    };
    loggers.set(key, logger);
  }
  return logger;
}
