/**
 * Application data units: how a PDU travels.
 *
 * - **TCP** (MODBUS Messaging on TCP/IP Implementation Guide V1.0b, 3.1.3):
 *   the MBAP header (transaction id, protocol id 0, length of what follows,
 *   unit id) before the PDU.
 * - **RTU** (MODBUS over Serial Line V1.02, 2.5.1): unit address, PDU, CRC-16
 *   low byte first; the same bytes over a serial line or inside a TCP stream
 *   to a serial gateway ("RTU over TCP"). RTU has no length field: the reader
 *   works the length out from the response layout (`responsePduLength`).
 *
 * @module
 */
import { MAX_PDU_BYTES, ModbusProtocolError, responsePduLength } from "./pdu.ts";

/** How PDUs are framed on a connection. */
export type Framing = "tcp" | "rtu";

/** One decoded response. */
export interface Frame {
  unitId: number;
  pdu: Uint8Array;
  /** MBAP transaction id (TCP only). */
  transactionId?: number;
}

const CRC_TABLE = (() => {
  // CRC-16/MODBUS: reflected polynomial 0xA001 (serial line guide, 6.2.2).
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    t[i] = c;
  }
  return t;
})();

/**
 * CRC-16/MODBUS of `bytes` (initial 0xFFFF).
 *
 * @example
 * ```ts
 * crc16(new Uint8Array([0x01, 0x03, 0x00, 0x00, 0x00, 0x01])); // 0x0a84, sent as 84 0a
 * ```
 */
export function crc16(bytes: Uint8Array, end = bytes.length): number {
  let crc = 0xffff;
  for (let i = 0; i < end; i++) crc = (crc >>> 8) ^ CRC_TABLE[(crc ^ bytes[i]) & 0xff];
  return crc;
}

const MBAP_HEADER = 7;

/** Builds the ADU of `pdu` for `unitId`; `transactionId` is used by TCP only. */
export function encodeFrame(
  framing: Framing,
  unitId: number,
  pdu: Uint8Array,
  transactionId = 0,
): Uint8Array {
  if (framing === "tcp") {
    const out = new Uint8Array(MBAP_HEADER + pdu.length);
    const len = pdu.length + 1;
    out.set([transactionId >> 8, transactionId & 0xff, 0, 0, len >> 8, len & 0xff, unitId]);
    out.set(pdu, MBAP_HEADER);
    return out;
  }
  const out = new Uint8Array(pdu.length + 3);
  out[0] = unitId;
  out.set(pdu, 1);
  const crc = crc16(out, pdu.length + 1);
  out[pdu.length + 1] = crc & 0xff;
  out[pdu.length + 2] = crc >> 8;
  return out;
}

/** Largest ADU either framing carries (TCP: 7 + 253; RTU: 256). */
const MAX_ADU = MBAP_HEADER + MAX_PDU_BYTES;

/**
 * Reassembles responses from a byte stream. Bounded: it never holds more than
 * one ADU plus one read's worth of bytes; anything that cannot be a frame is a
 * {@linkcode ModbusProtocolError} and the caller drops the connection (a
 * stream that lost its framing cannot be trusted to find it again).
 */
export class FrameDecoder {
  #framing: Framing;
  #buf = new Uint8Array(2 * MAX_ADU);
  #len = 0;

  /** A decoder for `framing`. */
  constructor(framing: Framing) {
    this.#framing = framing;
  }

  /** Bytes waiting for the rest of their frame. */
  get buffered(): number {
    return this.#len;
  }

  /** Forgets buffered bytes (a new request on a quiet RTU line). */
  reset(): void {
    this.#len = 0;
  }

  /** Adds received bytes; throws when they overflow what any frame could need. */
  push(chunk: Uint8Array): void {
    if (this.#len + chunk.length > this.#buf.length) {
      throw new ModbusProtocolError(
        `${this.#len + chunk.length} bytes received without a complete frame`,
      );
    }
    this.#buf.set(chunk, this.#len);
    this.#len += chunk.length;
  }

  /** The next complete frame, or null when more bytes are needed. */
  next(): Frame | null {
    return this.#framing === "tcp" ? this.#nextTcp() : this.#nextRtu();
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf.copyWithin(0, n, this.#len);
    this.#len -= n;
    return out;
  }

  #nextTcp(): Frame | null {
    if (this.#len < MBAP_HEADER) return null;
    const b = this.#buf;
    const protocol = (b[2] << 8) | b[3];
    const length = (b[4] << 8) | b[5];
    if (protocol !== 0) {
      throw new ModbusProtocolError(`MBAP protocol identifier ${protocol}, expected 0`);
    }
    if (length < 2 || length > MAX_PDU_BYTES + 1) {
      throw new ModbusProtocolError(`MBAP length ${length} outside 2..${MAX_PDU_BYTES + 1}`);
    }
    if (this.#len < 6 + length) return null;
    const adu = this.#take(6 + length);
    return {
      transactionId: (adu[0] << 8) | adu[1],
      unitId: adu[6],
      pdu: adu.subarray(MBAP_HEADER),
    };
  }

  #nextRtu(): Frame | null {
    if (this.#len < 2) return null;
    const pduLen = responsePduLength(this.#buf.subarray(1, this.#len));
    if (pduLen === null) return null;
    if (pduLen > MAX_PDU_BYTES) {
      throw new ModbusProtocolError(`RTU response of ${pduLen} PDU bytes`);
    }
    const total = 1 + pduLen + 2;
    if (this.#len < total) return null;
    const crc = crc16(this.#buf, total - 2);
    const got = this.#buf[total - 2] | (this.#buf[total - 1] << 8);
    if (crc !== got) {
      throw new ModbusProtocolError(
        `RTU CRC mismatch: computed 0x${crc.toString(16)}, received 0x${got.toString(16)}`,
      );
    }
    const adu = this.#take(total);
    return { unitId: adu[0], pdu: adu.subarray(1, 1 + pduLen) };
  }
}
