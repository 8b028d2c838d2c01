/**
 * The southbound adapter framework: the contract between the framework and
 * one protocol's adapter, the component that runs the configured adapters,
 * and the MQTT command `adapter-write` that writes through it.
 *
 * @module
 */
export {
  type Adapter,
  AdapterError,
  type AdapterErrorKind,
  type AdapterEvent,
  type AdapterReading,
  type AdapterSink,
  type AdapterState,
  type AdapterStatus,
  type PointStatus,
  type PointValue,
} from "./contract.ts";
export {
  type AdapterFactories,
  type AdapterFactory,
  type AdaptersComponent,
  adaptersComponent,
  type AdaptersOptions,
  isPointValue,
  parseSetPayload,
  type WriteOrigin,
} from "./component.ts";
export { ADAPTER_WRITE_COMMAND, adapterWriteCommand } from "./command.ts";
