/**
 * WASI-NN for modules: operator-installed ONNX models run by onnxruntime-web
 * in an engine Worker, reached by guests through `wasi_ephemeral_nn`. See
 * README.md.
 *
 * @module
 */

export { NnService } from "./service.ts";
export type {
  EngineStatus,
  InstallModelOptions,
  ModelStatus,
  NnPoolLink,
  NnServiceOptions,
} from "./service.ts";
export type { ModelRecord } from "./store.ts";
export type { ModelInfo, TensorSpec } from "./channel.ts";
export { EngineFilesError, ModelInvalidError, ModelNotFoundError } from "./errors.ts";
export { EngineError, EngineStoppedError, NnEngine } from "./engine.ts";
export { NN_MODULE, NN_SIGNATURES, NnErrno, TensorType } from "./abi.ts";
export { MODEL_NAME_RE } from "./names.ts";
export {
  EMBED_DIR,
  loadEngineFiles,
  npmCacheDist,
  npmPackageDir,
  ORT_FILES,
  ORT_VERSION,
} from "./ort_files.ts";
export { MAX_MODEL_UPLOAD_BYTES, modelsApi } from "./api.ts";
export { type ModelsComponent, modelsComponent } from "./component.ts";
