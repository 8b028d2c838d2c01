/**
 * Test helper: node-opcua's server (tests/_helpers/opcua_server.ts) as a
 * separate process on an ephemeral loopback port, and throwaway
 * certificates made with the openssl command-line tool.
 *
 * @module
 */
import type { ServerArgs } from "./opcua_server.ts";

const SCRIPT = new URL("./opcua_server.ts", import.meta.url).pathname;
/** The server script's answers start with this; everything else is node-opcua's output. */
const PREFIX = "@opcua-test ";

/** A certificate and key made by {@linkcode makeCertificate}. */
export interface TestCertificate {
  cert: string;
  key: string;
  /** SHA-256 of the DER bytes, lower-case hex. */
  sha256: string;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (out.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * A self-signed OPC UA application certificate (RSA 2048, SHA-256, the
 * application URI in subjectAltName) in `dir/{name}.crt` and `.key`.
 */
export async function makeCertificate(
  dir: string,
  name: string,
  options: { uri: string; days?: number; notBefore?: string },
): Promise<TestCertificate> {
  const cert = `${dir}/${name}.crt`;
  const key = `${dir}/${name}.key`;
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-sha256",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    String(options.days ?? 30),
    "-subj",
    `/CN=${name}/O=edged tests`,
    "-addext",
    `subjectAltName=URI:${options.uri},DNS:localhost,IP:127.0.0.1`,
    "-addext",
    "keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment",
    "-addext",
    "extendedKeyUsage=serverAuth,clientAuth",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
  ]);
  const fp = await run("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]);
  const sha256 = fp.trim().split("=")[1].replaceAll(":", "").toLowerCase();
  return { cert, key, sha256 };
}

/** A running node-opcua server. */
export interface OpcuaServer {
  port: number;
  /** `opc.tcp://127.0.0.1:PORT/UA/Test`. */
  endpoint: string;
  dir: string;
  /** Sends one command and waits for its one-line answer. */
  command(cmd: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Kills it (SIGKILL by default: a crash) and waits until it is gone. */
  stop(signal?: Deno.Signal): Promise<void>;
  /** Its stderr so far. */
  log(): Promise<string>;
}

/**
 * Starts node-opcua's server with `args` (the server's certificate must be
 * `dir/server.crt` / `server.key`) and waits until it listens.
 */
export async function startOpcuaServer(
  args: Omit<ServerArgs, "port"> & { port?: number },
): Promise<OpcuaServer> {
  const full: ServerArgs = { port: 0, ...args };
  const logFile = await Deno.open(`${args.dir}/server.log`, {
    write: true,
    create: true,
    append: true,
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", SCRIPT, JSON.stringify(full)],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const logDone = child.stderr.pipeTo(logFile.writable).catch(() => {});
  const writer = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const nextLine = async (): Promise<string> => {
    while (true) {
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith(PREFIX)) return line.slice(PREFIX.length);
        continue; // the library's own output
      }
      const { value, done } = await lines.read();
      if (done) throw new Error("the OPC UA server exited");
      buf += value;
    }
  };
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async (signal: Deno.Signal = "SIGKILL") => {
    if (!exited) {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    }
    await status;
    await writer.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await logDone;
  };
  const readLog = () => Deno.readTextFile(`${args.dir}/server.log`).catch(() => "");
  let port: number;
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const line = await Promise.race([
      nextLine(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error("the OPC UA server did not start in 60 s")),
          60_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    port = JSON.parse(line).ready.port;
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${await readLog()}`);
  }
  let queue = Promise.resolve();
  return {
    port,
    endpoint: `opc.tcp://127.0.0.1:${port}/UA/Test`,
    dir: args.dir,
    command(cmd) {
      const p = queue.then(async () => {
        await writer.write(new TextEncoder().encode(JSON.stringify(cmd) + "\n"));
        return JSON.parse(await nextLine());
      });
      queue = p.then(() => {}, () => {});
      return p;
    },
    stop,
    log: readLog,
  };
}

/** The base64 body of a PEM certificate, for comparing files. */
function pemBody(text: string): string {
  return text.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
}

/**
 * Puts `cert` into the server's trust list (`dir/pki/trusted/certs/`) and
 * takes it out of its rejected list, as an administrator does; node-opcua
 * reads both when it starts.
 */
export async function trustOnServer(dir: string, cert: string): Promise<void> {
  await Deno.mkdir(`${dir}/pki/trusted/certs`, { recursive: true });
  const name = cert.slice(cert.lastIndexOf("/") + 1).replace(/\.crt$/, ".pem");
  await Deno.copyFile(cert, `${dir}/pki/trusted/certs/${name}`);
  const body = pemBody(await Deno.readTextFile(cert));
  try {
    for await (const e of Deno.readDir(`${dir}/pki/rejected`)) {
      const path = `${dir}/pki/rejected/${e.name}`;
      if (e.isFile && pemBody(await Deno.readTextFile(path)) === body) await Deno.remove(path);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
