/**
 * A guard in front of the MQTT client's packet parser: it reads each
 * packet's fixed header (MQTT 3.1.1 and 5, section 2.2: the type byte and the
 * Remaining Length) as the bytes arrive and lets through only packets up to
 * `maxPacketBytes`. An oversized PUBLISH is dropped as it streams past, never
 * buffered (npm `mqtt` would buffer all of it before its own size check); if
 * it was QoS 1 its PUBACK is sent for it (section 3.4), so the broker does
 * not hold it in flight. Any other oversized packet ends the connection.
 * With MQTT 5 the broker is told the limit in CONNECT (Maximum Packet Size,
 * section 3.1.2.11.4) and should never send such a packet; with 3.1.1 this is
 * the only defence.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Transform, type TransformCallback } from "node:stream";

/** What {@linkcode PacketGuard} reports about a dropped packet. */
export interface DroppedPacket {
  /** Its topic, when it was a PUBLISH whose topic arrived. */
  topic?: string;
  /** Its size in bytes (fixed header included). */
  bytes: number;
}

/** Options of {@linkcode PacketGuard}. */
export interface PacketGuardOptions {
  maxPacketBytes: number;
  /** Sends bytes to the broker (the PUBACK of a dropped QoS 1 PUBLISH). */
  send: (bytes: Uint8Array) => void;
  /** A PUBLISH was dropped. */
  onDropped: (p: DroppedPacket) => void;
}

const PUBLISH = 3;
/** The most of an oversized PUBLISH kept to read its topic and packet id. */
const KEEP = 2 + 65535 + 2;

/**
 * The guard's state machine over the bytes from the broker, however they are
 * cut: {@linkcode scan} hands on the bytes of packets within the limit, in
 * order, and drops the others.
 */
export class PacketScanner {
  #o: PacketGuardOptions;
  /** Bytes of the fixed header being read. */
  #header: number[] = [];
  /** Bytes of {@linkcode #header} that arrived in earlier chunks (not yet handed on). */
  #carried = 0;
  /** Bytes still to pass (or drop) of the current packet's body. */
  #left = 0;
  #dropping = false;
  /** The start of a dropped PUBLISH (topic, packet id). */
  #kept: number[] = [];
  #dropFlags = 0;
  #dropSize = 0;

  /** Builds the scanner. */
  constructor(options: PacketGuardOptions) {
    this.#o = options;
  }

  /**
   * Scans the next bytes; `pass` gets the ones to hand on (views of `chunk`,
   * or a copy of a header that began in an earlier chunk). Returns an error
   * when the stream cannot go on (a malformed length, an oversized packet
   * other than PUBLISH).
   */
  scan(chunk: Uint8Array, pass: (bytes: Uint8Array) => void): Error | null {
    let pos = 0;
    let passFrom = 0; // the bytes of this chunk before this were handed on or dropped
    let headerStart = 0; // where the fixed header being read began in this chunk
    const handOn = (end: number) => {
      if (end > passFrom) pass(chunk.subarray(passFrom, end));
      passFrom = end;
    };
    while (pos < chunk.length) {
      if (this.#left > 0) {
        const n = Math.min(this.#left, chunk.length - pos);
        if (this.#dropping) {
          for (let i = 0; i < n && this.#kept.length < KEEP; i++) this.#kept.push(chunk[pos + i]);
          passFrom = pos + n;
        }
        pos += n;
        this.#left -= n;
        if (this.#left === 0 && this.#dropping) this.#dropped();
        continue;
      }
      // A fixed header: the type byte, then 1 to 4 bytes of Remaining Length.
      const h = this.#header;
      if (h.length === 0) headerStart = pos;
      h.push(chunk[pos++]);
      if (h.length === 1) continue;
      if ((h[h.length - 1] & 0x80) !== 0) {
        if (h.length === 5) return new Error("malformed MQTT Remaining Length");
        continue;
      }
      let length = 0;
      for (let i = h.length - 1; i >= 1; i--) length = length * 128 + (h[i] & 0x7f);
      const size = h.length + length;
      const type = h[0] >> 4;
      const carried = this.#carried;
      this.#carried = 0;
      this.#header = [];
      this.#left = length;
      if (size <= this.#o.maxPacketBytes) {
        if (carried > 0) pass(new Uint8Array(h.slice(0, carried)));
        continue;
      }
      if (type !== PUBLISH) {
        return new Error(
          `a packet of type ${type} and ${size} bytes exceeds ${this.#o.maxPacketBytes}`,
        );
      }
      // Hand on what came before this packet; drop the packet.
      handOn(carried > 0 ? passFrom : headerStart);
      passFrom = pos;
      this.#dropping = true;
      this.#dropFlags = h[0] & 0x0f;
      this.#dropSize = size;
      this.#kept = [];
      if (length === 0) this.#dropped();
    }
    if (this.#header.length > 0) {
      // A fixed header cut across chunks: held back until it is complete.
      handOn(this.#carried > 0 ? passFrom : headerStart);
      this.#carried = this.#header.length;
      passFrom = chunk.length;
    }
    handOn(chunk.length);
    return null;
  }

  /** The dropped PUBLISH is complete: report it, and acknowledge it if it was QoS 1. */
  #dropped(): void {
    this.#dropping = false;
    const k = this.#kept;
    const topicLength = k.length >= 2 ? (k[0] << 8) | k[1] : -1;
    const topic = topicLength >= 0 && k.length >= 2 + topicLength
      ? Buffer.from(k.slice(2, 2 + topicLength)).toString("utf8")
      : undefined;
    const qos = (this.#dropFlags >> 1) & 3;
    if (qos === 1 && topicLength >= 0 && k.length >= 4 + topicLength) {
      const id = (k[2 + topicLength] << 8) | k[3 + topicLength];
      this.#o.send(new Uint8Array([0x40, 0x02, id >> 8, id & 0xff]));
    }
    this.#kept = [];
    this.#o.onDropped({ topic, bytes: this.#dropSize });
  }
}

/** {@linkcode PacketScanner} as a pass-through stream (for transports built by npm `mqtt`). */
export class PacketGuard extends Transform {
  #scanner: PacketScanner;

  /** Builds the guard. */
  constructor(options: PacketGuardOptions) {
    super();
    this.#scanner = new PacketScanner(options);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const err = this.#scanner.scan(chunk, (bytes) => this.push(bytes));
    done(err ?? undefined);
  }
}
