/**
 * WASI-NN for modules: operator-installed ONNX models run by onnxruntime-web
 * in an engine Worker, reached by guests through `wasi_ephemeral_nn`. See
 * README.md.
 *
 * @module
 */

// service.ts (NnService) and engine.ts (NnEngine), with all they run on, load
// when first needed: modelsComponent's LazyNnService builds the service, and
// nnServiceClass() / nnEngineClass() give the classes to tools that run one
// themselves; tests import service.ts and engine.ts.
export { nnEngineClass, nnServiceClass } from "./_classes.ts";
export type { NnEngine } from "./engine.ts";
export type {
  EngineStatus,
  InstallModelOptions,
  ModelStatus,
  NnPoolLink,
  NnService,
  NnServiceOptions,
} from "./service.ts";
export type { ModelRecord } from "./store.ts";
export type { ModelInfo, TensorSpec } from "./channel.ts";
export { EngineFilesError, ModelInvalidError, ModelNotFoundError } from "./errors.ts";
export { EngineError, EngineStoppedError } from "./errors.ts";
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
export { MAX_MODEL_UPLOAD_BYTES, modelsApi, type ModelsApiService } from "./api.ts";
export { LazyNnService, type ModelsComponent, modelsComponent } from "./component.ts";
