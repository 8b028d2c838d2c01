/*
 * WASI-NN preview 1 (import module "wasi_ephemeral_nn") for C guests: the
 * witx of WebAssembly/wasi-nn (the load_by_name revision Wasmtime and
 * WasmEdge implement) lowered to core wasm. Every function returns an
 * nn_errno and writes its result through a pointer.
 */
#ifndef WASI_NN_H
#define WASI_NN_H
#include <stdint.h>

#define WASI_NN(name) __attribute__((import_module("wasi_ephemeral_nn"), import_name(name)))

typedef uint32_t nn_graph;
typedef uint32_t nn_context;

enum nn_errno {
  NN_SUCCESS = 0, NN_INVALID_ARGUMENT, NN_INVALID_ENCODING, NN_MISSING_MEMORY, NN_BUSY,
  NN_RUNTIME_ERROR, NN_UNSUPPORTED_OPERATION, NN_TOO_LARGE, NN_NOT_FOUND,
};
enum nn_tensor_type { NN_F16 = 0, NN_F32, NN_F64, NN_U8, NN_I32, NN_I64 };

/* The witx tensor record: dims (list u32), type (u8), data (list u8); 20 bytes on wasm32. */
typedef struct {
  const uint32_t *dims;
  uint32_t rank;
  uint8_t type;
  const uint8_t *data;
  uint32_t data_len;
} nn_tensor;

WASI_NN("load_by_name") int nn_load_by_name(const char *name, uint32_t name_len, nn_graph *graph);
WASI_NN("init_execution_context") int nn_init_execution_context(nn_graph graph, nn_context *ctx);
WASI_NN("set_input") int nn_set_input(nn_context ctx, uint32_t index, const nn_tensor *tensor);
WASI_NN("compute") int nn_compute(nn_context ctx);
WASI_NN("get_output")
int nn_get_output(nn_context ctx, uint32_t index, uint8_t *out, uint32_t out_max, uint32_t *written);

_Static_assert(sizeof(nn_tensor) == 20, "the witx tensor record is 20 bytes");
#endif
