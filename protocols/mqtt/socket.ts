/**
 * The transport under npm `mqtt` for `mqtt://` and `mqtts://`: a Node
 * `Duplex` over `Deno.connect`/`Deno.connectTls` that reads into one reused
 * buffer and runs the {@linkcode PacketScanner} over it, so only packets
 * within `mqtt.max_packet_bytes` are ever copied. (Through `node:net` every
 * byte received is copied into memory that Deno does not give back: a 200 MB
 * PUBLISH, dropped unread, still grew the process by 200 MB.)
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import { type PacketGuardOptions, PacketScanner } from "./packet_guard.ts";

/** Where and how to connect. */
export interface SocketOptions extends Omit<PacketGuardOptions, "send"> {
  hostname: string;
  port: number;
  /** TLS (`mqtts://`): the CA bundle, and a client certificate and key for mutual TLS. */
  tls?: { ca?: string; cert?: string; key?: string };
}

const READ_SIZE = 65536;

/** A connection to the broker as the stream npm `mqtt` expects. */
export class BrokerSocket extends Duplex {
  #conn: Promise<Deno.Conn>;
  #open: Deno.Conn | null = null;
  #buf = new Uint8Array(READ_SIZE);
  #scanner: PacketScanner;
  #reading = false;

  /** Starts connecting; writes wait for the connection. */
  constructor(o: SocketOptions) {
    super({ allowHalfOpen: false });
    this.#scanner = new PacketScanner({ ...o, send: (bytes) => this.write(Buffer.from(bytes)) });
    const { hostname, port, tls } = o;
    this.#conn = tls
      ? Deno.connectTls({
        hostname,
        port,
        caCerts: tls.ca ? [tls.ca] : undefined,
        ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
      })
      : Deno.connect({ hostname, port, transport: "tcp" });
    this.#conn.then((conn) => {
      if (this.destroyed) return conn.close();
      this.#open = conn;
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    }, (err) => this.destroy(err));
  }

  override _read(): void {
    if (!this.#reading) void this.#pump();
  }

  /** Reads until the consumer wants no more (push returned false) or the broker is done. */
  async #pump(): Promise<void> {
    this.#reading = true;
    try {
      const conn = await this.#conn;
      for (;;) {
        const n = await conn.read(this.#buf);
        if (this.destroyed) return;
        if (n === null) {
          this.push(null);
          return;
        }
        let more = true;
        const err = this.#scanner.scan(this.#buf.subarray(0, n), (bytes) => {
          more = this.push(Buffer.from(bytes)) && more; // a copy: the buffer is reused
        });
        if (err) return void this.destroy(err);
        if (!more) return;
      }
    } catch (err) {
      if (!this.destroyed) this.destroy(err as Error);
    } finally {
      this.#reading = false;
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.#writeAll(chunk).then(() => done(), done);
  }

  override _writev(
    chunks: { chunk: Buffer }[],
    done: (err?: Error | null) => void,
  ): void {
    this.#writeAll(Buffer.concat(chunks.map((c) => c.chunk))).then(() => done(), done);
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    const conn = await this.#conn;
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
  }

  override _final(done: (err?: Error | null) => void): void {
    this.#conn.then((conn) => conn.closeWrite()).then(() => done(), () => done());
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    try {
      this.#open?.close();
    } catch { /* closed already */ }
    done(err);
  }
}
