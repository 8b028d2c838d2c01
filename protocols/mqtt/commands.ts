/**
 * Downlink commands: `PREFIX/cmd/{command}` in, `PREFIX/cmd/{command}/result`
 * out (or the MQTT 5 Response Topic with its Correlation Data, MQTT 5
 * section 4.10, when the requester set them).
 *
 * Local policy comes first (docs/operators.md, "Trust"): a command must be on
 * the allow-list (`mqtt.commands.allow`) and within its rate
 * (`mqtt.commands.rate_per_minute`, a token bucket per command), else it is
 * refused before its handler runs.
 *
 * A request is a JSON object, `{"id": "...", ...params}`; the answer is
 * `{"id", "command", "ok": true, "result"}` or
 * `{"id", "command", "ok": false, "error": {"code", "message"}}`. Nothing a
 * requester sends can throw out of here. {@linkcode commandError} is the one
 * place a failure becomes an answer: an `EdgedError` (`lib/errors.ts`) answers
 * with its own code, the same code the HTTP API gives it.
 *
 * @module
 */
import { EdgedError, getLogger, storageError } from "../../lib/mod.ts";

const log = getLogger(["edged", "mqtt", "commands"]);

/** Runs one command; throw an `EdgedError` (e.g. {@linkcode CommandError}) to answer its code. */
export type CommandHandler = (params: Record<string, unknown>) => unknown | Promise<unknown>;

/** A refused request whose code depends on the request (bad JSON, bad parameters, ...). */
export class CommandError extends EdgedError {
  override readonly code: string;
  override readonly status = 400;
  /** Builds the error; `code` is e.g. `invalid_params`, `unavailable`. */
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** A command this device's configuration does not allow (`mqtt.commands.allow`). */
export class CommandNotAllowedError extends EdgedError {
  override readonly code = "command_not_allowed";
  override readonly status = 403;
  /** Builds the error for `command`. */
  constructor(command: string) {
    super(
      `command ${JSON.stringify(command)} is not allowed on this device (mqtt.commands.allow)`,
    );
  }
}

/** A command asked for more often than `mqtt.commands.rate_per_minute`. */
export class CommandRateLimitedError extends EdgedError {
  override readonly code = "rate_limited";
  override readonly status = 429;
  /** Builds the error for `command`. */
  constructor(command: string, perMinute: number) {
    super(`command ${JSON.stringify(command)} is limited to ${perMinute} requests per minute`, {
      headers: { "Retry-After": String(Math.ceil(60 / perMinute)) },
    });
  }
}

/**
 * The `error` of a failed command's answer: an `EdgedError`'s own body, the
 * same as the HTTP API's (`code`, `message` and any fields of the error such
 * as `field`, `details` or an update's digests). Anything that is not an
 * `EdgedError` is a bug of ours: logged, and answered `internal` without its
 * message.
 */
export function commandError(
  command: string,
  err: unknown,
): NonNullable<CommandResult["error"]> {
  const e = storageError(err);
  if (e instanceof EdgedError) return e.toJSON().error as { code: string; message: string };
  log.error("command {command} failed: {error}", {
    command,
    error: String(err instanceof Error ? err.stack ?? err.message : err),
  });
  return { code: "internal", message: "internal error" };
}

/** The answer to one request. */
export interface CommandResult {
  id: string | number | null;
  command: string;
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string; [field: string]: unknown };
}

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** Largest request payload accepted. */
export const MAX_REQUEST_BYTES = 65536;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Local policy of {@linkcode CommandRegistry}. */
export interface CommandPolicy {
  /** Commands that may run; others are refused. @default {every registered command} */
  allow?: readonly string[];
  /** Requests per minute per command, with a burst of as many. @default {Infinity} */
  ratePerMinute?: number;
}

/** One token bucket per command name (unknown names share one), refilled continuously. */
class RateLimiter {
  #perMs: number;
  #burst: number;
  #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(perMinute: number) {
    this.#perMs = perMinute / 60_000;
    this.#burst = perMinute;
  }

  take(name: string): boolean {
    if (!Number.isFinite(this.#burst)) return true;
    const now = performance.now();
    const b = this.#buckets.get(name) ?? { tokens: this.#burst, at: now };
    b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMs);
    b.at = now;
    this.#buckets.set(name, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/**
 * The command registry.
 *
 * @example
 * ```ts
 * const cmds = new CommandRegistry();
 * cmds.register("ping", () => ({ pong: true }));
 * const res = await cmds.handle("ping", new TextEncoder().encode('{"id": "1"}'));
 * // { id: "1", command: "ping", ok: true, result: { pong: true } }
 * ```
 */
export class CommandRegistry {
  #handlers = new Map<string, CommandHandler>();
  #allow: ReadonlySet<string> | null;
  #rate: RateLimiter;
  #perMinute: number;

  /** Builds the registry; `policy` says which commands may run and how often. */
  constructor(policy: CommandPolicy = {}) {
    this.#allow = policy.allow ? new Set(policy.allow) : null;
    this.#perMinute = policy.ratePerMinute ?? Infinity;
    if (!(this.#perMinute > 0)) {
      throw new RangeError(`ratePerMinute must be positive, got ${policy.ratePerMinute}`);
    }
    this.#rate = new RateLimiter(this.#perMinute);
  }

  /** Adds (or replaces) the handler of `name`. */
  register(name: string, handler: CommandHandler): void {
    if (!NAME_RE.test(name)) {
      throw new TypeError(`command name must match ${NAME_RE}, got ${JSON.stringify(name)}`);
    }
    this.#handlers.set(name, handler);
  }

  /** Names of the registered commands. */
  names(): string[] {
    return [...this.#handlers.keys()].sort();
  }

  /** Whether the policy lets `name` run. */
  allowed(name: string): boolean {
    return this.#allow === null || this.#allow.has(name);
  }

  /** Parses, runs and answers one request; never throws. */
  async handle(command: string, payload: Uint8Array): Promise<CommandResult> {
    let id: string | number | null = null;
    try {
      if (payload.length > MAX_REQUEST_BYTES) {
        throw new CommandError(
          "too_large",
          `request is ${payload.length} bytes, more than ${MAX_REQUEST_BYTES}`,
        );
      }

      let body: unknown;
      try {
        const text = decoder.decode(payload);
        body = text.trim() === "" ? {} : JSON.parse(text);
      } catch (err) {
        throw new CommandError(
          "invalid_json",
          `request is not UTF-8 JSON: ${(err as Error).message}`,
        );
      }
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new CommandError("invalid_request", "request must be a JSON object");
      }
      const params = body as Record<string, unknown>;
      if (typeof params.id === "string" || typeof params.id === "number") id = params.id;
      else if (params.id !== undefined) {
        throw new CommandError("invalid_request", "id must be a string or a number");
      }
      const handler = this.#handlers.get(command);
      if (!this.#rate.take(handler ? command : "")) {
        throw new CommandRateLimitedError(command, this.#perMinute);
      }
      if (!handler) {
        throw new CommandError(
          "unknown_command",
          `unknown command ${JSON.stringify(command)}; known: ${this.names().join(", ")}`,
        );
      }
      if (!this.allowed(command)) throw new CommandNotAllowedError(command);
      const result = await handler(params);
      return { id, command, ok: true, result: result ?? null };
    } catch (err) {
      return { id, command, ok: false, error: commandError(command, err) };
    }
  }
}

/** Reads a required string parameter or throws `invalid_params`. */
export function stringParam(params: Record<string, unknown>, name: string): string {
  const v = params[name];
  if (typeof v !== "string" || v === "") {
    throw new CommandError("invalid_params", `parameter '${name}' must be a non-empty string`);
  }
  return v;
}
