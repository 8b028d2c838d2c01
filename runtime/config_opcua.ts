/**
 * The `[[adapters.opcua]]` configuration blocks: one OPC UA server (a machine
 * controller, a PLC) whose nodes edged subscribes to. Validated with the rest
 * of the configuration; every rule names the setting it checks.
 *
 * @module
 */
import { z } from "zod";

/** Adapter names: `[a-z0-9-]+`, shared by every adapter kind. */
const ADAPTER_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Device ids and metrics become topic levels: the rule of `POST /api/v1/data`. */
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const ID_RULE = "must be 1-128 of A-Z a-z 0-9 . _ : - starting with a letter or digit";
/**
 * An OPC UA NodeId in its string form (OPC 10000-6 5.3.1.10): an optional
 * `ns=<index>;` or `nsu=<uri>;` and one of `i=`, `s=`, `g=`, `b=`.
 */
const NODE_ID_RE =
  /^(?:(?:ns=\d{1,5}|nsu=[^;]+);)?(?:i=\d{1,10}|s=.+|g=[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|b=[A-Za-z0-9+/=]+)$/s;
/** A SHA-256 certificate thumbprint: 64 hex digits, optionally in colon-separated pairs. */
const SHA256_RE = /^(?:[0-9A-Fa-f]{64}|(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2})$/;

/** One node read into readings of `metric`. */
export const opcuaPointSchema = z.strictObject({
  /** The reading's metric (`sensors/{device_id}/{metric}`); unique within the adapter. */
  metric: z.string().regex(ID_RE, ID_RULE).describe(
    "the reading's metric: `sensors/{device_id}/{metric}`; unique in the adapter",
  ),
  /** The node whose Value attribute is monitored, e.g. `ns=1;s=Speed` or `ns=2;i=1001`. */
  node_id: z.string().regex(NODE_ID_RE, "must be an OPC UA NodeId such as ns=1;s=Speed or i=2258")
    .describe(
      "the NodeId whose Value is monitored: `ns=1;s=Speed`, `ns=2;i=1001`, `nsu=URI;s=...`",
    ),
  /** Whether `devices/{adapter}/{metric}/set` may write the node. */
  writable: z.boolean().default(false).describe(
    "whether `devices/{adapter}/{metric}/set` writes the node",
  ),
});

/** The OPC UA security policies edged offers (OPC 10000-7; the deprecated Basic128Rsa15 and Basic256 are left out). */
export const OPCUA_SECURITY_POLICIES = [
  "None",
  "Basic256Sha256",
  "Aes128_Sha256_RsaOaep",
  "Aes256_Sha256_RsaPss",
] as const;

/** One `[[adapters.opcua]]` block. */
export const opcuaAdapterSchema = z.strictObject({
  /** Unique adapter name (`[a-z0-9-]+`): `devices/{name}/{metric}/set`, the API, the metrics. */
  name: z.string().regex(ADAPTER_NAME_RE, "must be 1-63 of a-z 0-9 - starting alphanumeric")
    .describe(
      "unique across all adapters; topics `devices/{name}/...`",
    ),
  /** The server's endpoint URL. */
  endpoint: z.string().regex(
    /^opc\.tcp:\/\/[^\s/:]+(?::\d{1,5})?(?:\/\S*)?$/,
    "must be an opc.tcp://HOST[:PORT][/PATH] URL",
  ).describe(
    "the server's endpoint URL, `opc.tcp://HOST:PORT/PATH`",
  ),
  /** Readings become `sensors/{device_id}/{metric}`; unset means the adapter's `name`. */
  device_id: z.string().regex(ID_RE, ID_RULE).optional().describe(
    "readings become `sensors/{device_id}/{metric}`; unset: the adapter's name",
  ),
  /** Message security of the secure channel (OPC 10000-4 7.20). */
  security_mode: z.enum(["None", "Sign", "SignAndEncrypt"]).default("SignAndEncrypt").describe(
    "message security of the secure channel; `None` is for test benches only",
  ),
  /** Security policy of the secure channel; `None` exactly when `security_mode` is `None`. */
  security_policy: z.enum(OPCUA_SECURITY_POLICIES).default("Basic256Sha256").describe(
    "`None` exactly when `security_mode` is `None`",
  ),
  /** User name of a UserName identity token (with `password`); unset with no user certificate means anonymous. */
  username: z.string().min(1).max(256).optional().describe(
    "a UserName identity (with `password`); no identity set: anonymous",
  ),
  /** Password for `username`. */
  password: z.string().max(1024).optional().describe(
    "the password of `username`",
  ),
  /** PEM certificate of an X.509 user identity token (with `user_private_key_file`). */
  user_certificate_file: z.string().min(1).optional().describe(
    "PEM certificate of an X.509 user identity (with `user_private_key_file`)",
  ),
  /** PEM private key for `user_certificate_file`. */
  user_private_key_file: z.string().min(1).optional().describe(
    "PEM key of `user_certificate_file`",
  ),
  /**
   * edged's application instance certificate (PEM) for this server; unset
   * means one is generated in the data directory on first start.
   */
  certificate_file: z.string().min(1).optional().describe(
    "edged's application certificate (PEM); unset: generated in `{data_dir}/opcua/{name}/`",
  ),
  /** PEM private key for `certificate_file`. */
  private_key_file: z.string().min(1).optional().describe(
    "PEM key of `certificate_file` (unencrypted, mode 0600)",
  ),
  /** Pins the server's certificate by the SHA-256 of its DER bytes (hex, colons allowed). */
  server_certificate_sha256: z.string().regex(SHA256_RE, "must be 64 hex digits (colons allowed)")
    .optional().describe(
      "trusts the server certificate with this SHA-256 (hex, colons allowed)",
    ),
  /** Pins the server's certificate: a PEM or DER file with exactly that certificate. */
  server_certificate_file: z.string().min(1).optional().describe(
    "trusts exactly the server certificate in this file (PEM or DER)",
  ),
  /** Trusts server certificates found in this directory (PEM or DER), or issued by one found there. */
  trusted_certificates_dir: z.string().min(1).optional().describe(
    "trusts server certificates in this directory, or issued by a CA in it",
  ),
  /** How often the server sends the changes of the subscription. */
  publishing_interval_ms: z.number().int().min(10).max(3_600_000).default(1000).describe(
    "how often the server sends the subscription's changes",
  ),
  /** How often the server samples each node; unset means the publishing interval. */
  sampling_interval_ms: z.number().int().min(0).max(3_600_000).optional().describe(
    "how often the server samples each node; unset: the publishing interval; 0: every change",
  ),
  /** Changes the server keeps per node between two publishes (oldest dropped beyond). */
  queue_size: z.number().int().min(1).max(10_000).default(10).describe(
    "changes kept per node between two publishes (oldest dropped beyond)",
  ),
  /** Time a request (connect, read, write) may take. */
  timeout_ms: z.number().int().min(100).max(600_000).default(10_000).describe(
    "time a connect, read or write may take",
  ),
  /** First reconnect delay; doubles (with jitter) up to `reconnect_max_ms`. */
  reconnect_min_ms: z.number().int().min(10).max(600_000).default(500).describe(
    "first reconnect delay; doubles with jitter up to `reconnect_max_ms`",
  ),
  /** Longest reconnect delay. */
  reconnect_max_ms: z.number().int().min(10).max(3_600_000).default(30_000).describe(
    "longest reconnect delay",
  ),
  /** The nodes read. */
  points: z.array(opcuaPointSchema).min(1, "needs at least one [[adapters.opcua.points]]")
    .max(10_000),
}).superRefine((a, ctx) => {
  const issue = (path: string, message: string) =>
    ctx.addIssue({ code: "custom", path: [path], message });
  if ((a.security_mode === "None") !== (a.security_policy === "None")) {
    issue(
      "security_policy",
      a.security_mode === "None"
        ? `must be "None" when security_mode is "None"`
        : `must not be "None" when security_mode is "${a.security_mode}"`,
    );
  }
  if ((a.username === undefined) !== (a.password === undefined)) {
    issue(a.username === undefined ? "username" : "password", "username and password go together");
  }
  if ((a.user_certificate_file === undefined) !== (a.user_private_key_file === undefined)) {
    issue(
      a.user_certificate_file === undefined ? "user_certificate_file" : "user_private_key_file",
      "user_certificate_file and user_private_key_file go together",
    );
  }
  if (a.username !== undefined && a.user_certificate_file !== undefined) {
    issue("user_certificate_file", "choose one identity: username/password or a user certificate");
  }
  if ((a.certificate_file === undefined) !== (a.private_key_file === undefined)) {
    issue(
      a.certificate_file === undefined ? "certificate_file" : "private_key_file",
      "certificate_file and private_key_file go together",
    );
  }
  const pinned =
    [a.server_certificate_sha256, a.server_certificate_file, a.trusted_certificates_dir]
      .filter((v) => v !== undefined).length;
  if (a.security_mode === "None") {
    if (a.username !== undefined || a.user_certificate_file !== undefined) {
      issue(
        a.username !== undefined ? "username" : "user_certificate_file",
        `credentials need security_mode "Sign" or "SignAndEncrypt" (they would go to an unverified server)`,
      );
    }
  } else if (pinned === 0) {
    issue(
      "server_certificate_sha256",
      `security_mode "${a.security_mode}" needs the server certificate trusted explicitly: ` +
        "set server_certificate_sha256, server_certificate_file or trusted_certificates_dir",
    );
  }
  if (a.reconnect_max_ms < a.reconnect_min_ms) {
    issue("reconnect_max_ms", "must be at least reconnect_min_ms");
  }
  const seen = new Set<string>();
  a.points.forEach((p, i) => {
    if (seen.has(p.metric)) {
      ctx.addIssue({
        code: "custom",
        path: ["points", i, "metric"],
        message: `'${p.metric}' is used by another point of this adapter`,
      });
    }
    seen.add(p.metric);
  });
});

/** A validated `[[adapters.opcua]]` block. */
export type OpcuaAdapterConfig = z.infer<typeof opcuaAdapterSchema>;
/** A validated `[[adapters.opcua.points]]` block. */
export type OpcuaPointConfig = z.infer<typeof opcuaPointSchema>;
