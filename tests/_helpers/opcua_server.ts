/**
 * A real OPC UA server for the tests and the bench: node-opcua's
 * OPCUAServer (from npm, written by nobody on this team), run as its own
 * process by {@linkcode startOpcuaServer} in `opcua.ts`.
 *
 * Argument: one JSON object ({@linkcode ServerArgs}). Prints one line
 * `@opcua-test {"ready": {"port": N}}` once it listens, then answers commands
 * read as JSON lines on stdin with one `@opcua-test JSON` line each:
 * - `{"set": NAME, "value": V}` sets a variable now and answers the source
 *   timestamp it gave it, `{"ok": true, "ts": MS}`;
 * - `{"status": NAME, "code": "BadSensorFailure"}` gives it a bad status;
 * - `{"get": NAME}` answers `{"value": V}` (what a client wrote);
 * - `{"tick": false|true}` pauses or resumes the changing variables.
 *
 * Variables in namespace 1 (`ns=1;s=NAME`): `Counter` (UInt32, +1 every
 * `tickMs`), `Speed` (Double, changes every `tickMs`), `Setpoint` (Double,
 * writable), `Valve` (Boolean, writable), `Level` (Int16, writable),
 * `Quality` (Double, status set by command), `Label` (String), `ReadOnly`
 * (Double, not writable), `TankLevel` (Double, percent, set by command) and
 * `Bench0..Bench{benchVars-1}` (Double).
 *
 * @module
 */
import {
  DataType,
  MessageSecurityMode,
  nodesets,
  OPCUACertificateManager,
  OPCUAServer,
  SecurityPolicy,
  type StatusCode,
  StatusCodes,
  type UAVariable,
  Variant,
} from "node-opcua";

/** What the test passes (as one JSON argument). */
export interface ServerArgs {
  /** Directory with `server.crt`/`server.key` and the server's PKI (`pki/trusted/certs/`). */
  dir: string;
  /** 0 for an ephemeral port. */
  port: number;
  /** Offered security: `None`, `Sign` and/or `SignAndEncrypt` (with Basic256Sha256). */
  modes: string[];
  /** Accepted user names and passwords; anonymous is allowed unless `anonymous` is false. */
  users?: Record<string, string>;
  anonymous?: boolean;
  /** First value of `Counter`. */
  counterStart?: number;
  /** Period of the changing variables; 0 means they change only by command. */
  tickMs?: number;
  /** Number of BenchN variables changed every tick (bench). */
  benchVars?: number;
}

const args = JSON.parse(Deno.args[0]) as ServerArgs;
const modeOf: Record<string, MessageSecurityMode> = {
  None: MessageSecurityMode.None,
  Sign: MessageSecurityMode.Sign,
  SignAndEncrypt: MessageSecurityMode.SignAndEncrypt,
};
const certificateManager = new OPCUACertificateManager({
  rootFolder: `${args.dir}/pki`,
  // Only client certificates in pki/trusted/certs/ (node-opcua's auto-accept
  // path also crashes under Deno: a file watch on a moved file).
  automaticallyAcceptUnknownCertificate: false,
});
await certificateManager.initialize();
// X.509 user tokens are checked against a store of their own, kept here too
// (node-opcua's default is a folder in the home directory).
const userCertificateManager = new OPCUACertificateManager({
  rootFolder: `${args.dir}/user-pki`,
  automaticallyAcceptUnknownCertificate: false,
});
await userCertificateManager.initialize();
const users = args.users ?? {};
const server = new OPCUAServer({
  port: args.port,
  hostname: "127.0.0.1",
  alternateHostname: ["127.0.0.1"],
  resourcePath: "/UA/Test",
  nodeset_filename: [nodesets.standard],
  certificateFile: `${args.dir}/server.crt`,
  privateKeyFile: `${args.dir}/server.key`,
  serverCertificateManager: certificateManager,
  userCertificateManager,
  securityModes: args.modes.map((m) => modeOf[m]),
  securityPolicies: args.modes.map((m) =>
    m === "None" ? SecurityPolicy.None : SecurityPolicy.Basic256Sha256
  ),
  allowAnonymous: args.anonymous ?? true,
  userManager: { isValidUser: (name: string, password: string) => users[name] === password },
  serverInfo: { applicationUri: "urn:edged-test:opcua-server" },
  maxConnectionsPerEndpoint: 20,
});
await server.initialize();
const addressSpace = server.engine.addressSpace!;
const ns = addressSpace.getOwnNamespace();
const folder = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Line" });
const vars = new Map<string, UAVariable>();
function add(name: string, dataType: DataType, value: unknown, writable: boolean): UAVariable {
  const v = ns.addVariable({
    componentOf: folder,
    browseName: name,
    nodeId: `s=${name}`,
    dataType: DataType[dataType],
    accessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
    userAccessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
    minimumSamplingInterval: 0,
  });
  v.setValueFromSource(new Variant({ dataType, value }), StatusCodes.Good, new Date());
  vars.set(name, v);
  return v;
}
const counter = add("Counter", DataType.UInt32, args.counterStart ?? 0, false);
const speed = add("Speed", DataType.Double, 0, false);
add("Setpoint", DataType.Double, 0, true);
add("Valve", DataType.Boolean, false, true);
add("Level", DataType.Int16, 0, true);
add("Quality", DataType.Double, 1, false);
add("Label", DataType.String, "line 2", false);
add("ReadOnly", DataType.Double, 7, false);
add("TankLevel", DataType.Double, 50, false);
const bench: UAVariable[] = [];
for (let i = 0; i < (args.benchVars ?? 0); i++) {
  bench.push(add(`Bench${i}`, DataType.Double, 0, false));
}

let n = args.counterStart ?? 0;
let ticking = true;
let seq = 0;
if ((args.tickMs ?? 0) > 0) {
  setInterval(() => {
    if (!ticking) return;
    const now = new Date();
    n++;
    counter.setValueFromSource(
      new Variant({ dataType: DataType.UInt32, value: n }),
      StatusCodes.Good,
      now,
    );
    speed.setValueFromSource(
      new Variant({ dataType: DataType.Double, value: 100 + Math.sin(n / 10) * 10 }),
      StatusCodes.Good,
      now,
    );
    seq++;
    for (const b of bench) {
      b.setValueFromSource(
        new Variant({ dataType: DataType.Double, value: seq }),
        StatusCodes.Good,
        now,
      );
    }
  }, args.tickMs);
}

await server.start();
// node-opcua prints to stdout too: answers carry a prefix of their own.
const out = (o: unknown) => console.log(`@opcua-test ${JSON.stringify(o)}`);
out({ ready: { port: server.endpoints[0].port } });

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
for await (const chunk of lines) {
  pending += chunk;
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    if ("set" in cmd) {
      const v = vars.get(cmd.set)!;
      const dataType = v.dataTypeObj.basicDataType as DataType;
      const ts = new Date();
      v.setValueFromSource(new Variant({ dataType, value: cmd.value }), StatusCodes.Good, ts);
      out({ ok: true, ts: ts.getTime() });
    } else if ("status" in cmd) {
      const v = vars.get(cmd.status)!;
      const code = (StatusCodes as unknown as Record<string, StatusCode>)[cmd.code];
      v.setValueFromSource(new Variant({ dataType: DataType.Double, value: 0 }), code, new Date());
      out({ ok: true });
    } else if ("get" in cmd) {
      const dv = vars.get(cmd.get)!.readValue();
      out({ value: dv.value.value });
    } else if ("tick" in cmd) {
      ticking = !!cmd.tick;
      out({ ok: true });
    }
  }
}
// stdin closed: the test is done with us.
await server.shutdown(0);
Deno.exit(0);
