/**
 * Modbus protocol data units (PDUs): the function codes edged uses, their
 * requests and responses, and exception responses, as in the MODBUS
 * Application Protocol Specification V1.1b3 (section numbers below refer to
 * it). A PDU is the same over TCP (MBAP header) and serial RTU (address +
 * CRC); framing lives in `frame.ts`.
 *
 * @module
 */

/** Public function codes (section 5.1) used here. */
export const FC = {
  READ_COILS: 0x01,
  READ_DISCRETE_INPUTS: 0x02,
  READ_HOLDING_REGISTERS: 0x03,
  READ_INPUT_REGISTERS: 0x04,
  WRITE_SINGLE_COIL: 0x05,
  WRITE_SINGLE_REGISTER: 0x06,
  WRITE_MULTIPLE_COILS: 0x0f,
  WRITE_MULTIPLE_REGISTERS: 0x10,
} as const;

/** Most coils or discrete inputs one read may ask for (6.1, 6.2: 0x7D0). */
export const MAX_READ_BITS = 2000;
/** Most registers one read may ask for (6.3, 6.4: 0x7D). */
export const MAX_READ_REGISTERS = 125;
/** Most registers one write may carry (6.12: 0x7B). */
export const MAX_WRITE_REGISTERS = 123;
/** Largest PDU (4.1: 256-byte serial ADU less address and CRC). */
export const MAX_PDU_BYTES = 253;

/** Exception codes (section 7) and their names in the specification. */
export const EXCEPTION_NAMES: Readonly<Record<number, string>> = {
  0x01: "illegal function",
  0x02: "illegal data address",
  0x03: "illegal data value",
  0x04: "server device failure",
  0x05: "acknowledge",
  0x06: "server device busy",
  0x08: "memory parity error",
  0x0a: "gateway path unavailable",
  0x0b: "gateway target device failed to respond",
};

/** A Modbus exception response (section 7): the server understood and refused. */
export class ModbusException extends Error {
  /** The exception code. */
  readonly code: number;
  /** The function code of the request it answers. */
  readonly functionCode: number;
  /** Builds the error; the message is the specification's name of `code`. */
  constructor(functionCode: number, code: number) {
    const name = EXCEPTION_NAMES[code] ?? `exception code ${code}`;
    super(`${name} (exception 0x${hex(code)} to function 0x${hex(functionCode)})`);
    this.name = "ModbusException";
    this.code = code;
    this.functionCode = functionCode;
  }
}

/** A response that breaks the protocol (wrong length, wrong echo, ...). */
export class ModbusProtocolError extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ModbusProtocolError";
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, "0");
}

function checkAddress(address: number): void {
  if (!Number.isInteger(address) || address < 0 || address > 0xffff) {
    throw new RangeError(`address must be an integer from 0 to 65535, got ${address}`);
  }
}

function checkQuantity(quantity: number, max: number, address: number): void {
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > max) {
    throw new RangeError(`quantity must be an integer from 1 to ${max}, got ${quantity}`);
  }
  if (address + quantity > 0x10000) {
    throw new RangeError(`address ${address} + quantity ${quantity} passes 65535`);
  }
}

/** The four read functions, by the table they read. */
export type ReadFunction = 0x01 | 0x02 | 0x03 | 0x04;

/** Whether `fc` reads bits (coils, discrete inputs) rather than registers. */
export function readsBits(fc: ReadFunction): boolean {
  return fc === FC.READ_COILS || fc === FC.READ_DISCRETE_INPUTS;
}

/**
 * A read request (6.1-6.4): function, starting address, quantity.
 *
 * @example
 * ```ts
 * readRequest(0x03, 0, 2); // Uint8Array [3, 0, 0, 0, 2]
 * ```
 */
export function readRequest(fc: ReadFunction, address: number, quantity: number): Uint8Array {
  checkAddress(address);
  checkQuantity(quantity, readsBits(fc) ? MAX_READ_BITS : MAX_READ_REGISTERS, address);
  return new Uint8Array([fc, address >> 8, address & 0xff, quantity >> 8, quantity & 0xff]);
}

/** Throws {@linkcode ModbusException} when `pdu` is an exception response to `fc`. */
function checkException(fc: number, pdu: Uint8Array): void {
  if (pdu.length >= 2 && pdu[0] === (fc | 0x80)) throw new ModbusException(fc, pdu[1]);
  if (pdu.length === 0 || pdu[0] !== fc) {
    throw new ModbusProtocolError(
      `response function 0x${hex(pdu[0] ?? 0)} does not answer request 0x${hex(fc)}`,
    );
  }
}

/**
 * Decodes the response to {@linkcode readRequest}: registers as 16-bit
 * unsigned values (big-endian on the wire, 4.2), bits as 0/1 (LSB of the first
 * byte is the first bit, 6.1).
 */
export function parseReadResponse(fc: ReadFunction, quantity: number, pdu: Uint8Array): number[] {
  checkException(fc, pdu);
  const byteCount = pdu[1];
  const expected = readsBits(fc) ? Math.ceil(quantity / 8) : quantity * 2;
  if (byteCount !== expected || pdu.length !== 2 + expected) {
    throw new ModbusProtocolError(
      `read response carries ${byteCount} bytes in a ${pdu.length}-byte PDU, expected ${expected}`,
    );
  }
  const out = new Array<number>(quantity);
  if (readsBits(fc)) {
    for (let i = 0; i < quantity; i++) out[i] = (pdu[2 + (i >> 3)] >> (i & 7)) & 1;
  } else {
    for (let i = 0; i < quantity; i++) out[i] = (pdu[2 + 2 * i] << 8) | pdu[3 + 2 * i];
  }
  return out;
}

/** Write Single Coil (6.5): ON is 0xFF00, OFF 0x0000. */
export function writeCoilRequest(address: number, on: boolean): Uint8Array {
  checkAddress(address);
  return new Uint8Array([FC.WRITE_SINGLE_COIL, address >> 8, address & 0xff, on ? 0xff : 0, 0]);
}

/** Write Single Register (6.6). */
export function writeRegisterRequest(address: number, value: number): Uint8Array {
  checkAddress(address);
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new RangeError(`register value must be an integer from 0 to 65535, got ${value}`);
  }
  return new Uint8Array([
    FC.WRITE_SINGLE_REGISTER,
    address >> 8,
    address & 0xff,
    value >> 8,
    value & 0xff,
  ]);
}

/** Write Multiple Registers (6.12): several registers in one atomic request. */
export function writeRegistersRequest(address: number, values: readonly number[]): Uint8Array {
  checkAddress(address);
  checkQuantity(values.length, MAX_WRITE_REGISTERS, address);
  const pdu = new Uint8Array(6 + 2 * values.length);
  pdu.set([
    FC.WRITE_MULTIPLE_REGISTERS,
    address >> 8,
    address & 0xff,
    values.length >> 8,
    values.length & 0xff,
    2 * values.length,
  ]);
  values.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
      throw new RangeError(`register value must be an integer from 0 to 65535, got ${v}`);
    }
    pdu[6 + 2 * i] = v >> 8;
    pdu[7 + 2 * i] = v & 0xff;
  });
  return pdu;
}

/**
 * Checks the response to a write request: single writes echo the request
 * (6.5, 6.6); multiple writes echo function, address and quantity (6.12).
 */
export function checkWriteResponse(request: Uint8Array, pdu: Uint8Array): void {
  const fc = request[0];
  checkException(fc, pdu);
  // Both layouts are 5 bytes: function, address, then value or quantity.
  if (pdu.length !== 5) {
    throw new ModbusProtocolError(`write response is ${pdu.length} bytes, expected 5`);
  }
  for (let i = 1; i < 5; i++) {
    if (pdu[i] !== request[i]) {
      throw new ModbusProtocolError("write response does not echo the request");
    }
  }
}

/**
 * The length of the response PDU that starts with `head` (function code and,
 * for reads, the byte count), or null when more bytes are needed. Serial RTU
 * has no length field, so its framer asks this (section 6 response layouts).
 */
export function responsePduLength(head: Uint8Array): number | null {
  if (head.length < 1) return null;
  const fc = head[0];
  if (fc & 0x80) return 2;
  switch (fc) {
    case FC.READ_COILS:
    case FC.READ_DISCRETE_INPUTS:
    case FC.READ_HOLDING_REGISTERS:
    case FC.READ_INPUT_REGISTERS:
      return head.length < 2 ? null : 2 + head[1];
    case FC.WRITE_SINGLE_COIL:
    case FC.WRITE_SINGLE_REGISTER:
    case FC.WRITE_MULTIPLE_COILS:
    case FC.WRITE_MULTIPLE_REGISTERS:
      return 5;
    default:
      throw new ModbusProtocolError(`response with unknown function code 0x${hex(fc)}`);
  }
}
