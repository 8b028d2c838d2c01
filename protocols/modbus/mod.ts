/**
 * Modbus: TCP, RTU over TCP and serial RTU; the client, the point codec, the
 * read planner and the adapter that the framework runs.
 *
 * @module
 */
export { ModbusAdapter, type ModbusAdapterOptions, toAdapterError } from "./adapter.ts";
export {
  type ClientOptions,
  ModbusBusyError,
  ModbusClient,
  ModbusConnectionError,
  ModbusTimeoutError,
} from "./client.ts";
export {
  decodeRaw,
  decodeValue,
  EncodeError,
  encodeValue,
  type Encoding,
  type PointType,
  REGISTERS,
} from "./codec.ts";
export { crc16, encodeFrame, type Frame, FrameDecoder, type Framing } from "./frame.ts";
export {
  checkWriteResponse,
  EXCEPTION_NAMES,
  FC,
  MAX_READ_BITS,
  MAX_READ_REGISTERS,
  MAX_WRITE_REGISTERS,
  ModbusException,
  ModbusProtocolError,
  parseReadResponse,
  type ReadFunction,
  readRequest,
  writeCoilRequest,
  writeRegisterRequest,
  writeRegistersRequest,
} from "./pdu.ts";
export { planReads, READ_FUNCTION, type ReadBlock, type Table } from "./plan.ts";
export { describeTarget, openTransport, sttyArgs, type Transport } from "./transport.ts";
