/*
 * edged: a minimal wasm surface over libbz2's low-level API
 * (BZ2_bzCompress / BZ2_bzDecompress), so TypeScript can stream bzip2 with
 * bounded memory. libbz2 itself is compiled unmodified from the Debian source
 * package bzip2 1.0.8 (see build.sh); this file is edged's own code.
 */
#include <stdlib.h>
#include <string.h>
#include "bzlib.h"

/* Required by libbz2 when built with BZ_NO_STDIO: an internal assertion
 * failed. There is no way to recover the stream, so trap. */
void bz_internal_error(int errcode) {
  (void)errcode;
  __builtin_trap();
}

__attribute__((export_name("bz_alloc"))) void *bz_alloc(size_t n) { return malloc(n); }
__attribute__((export_name("bz_free"))) void bz_free(void *p) { free(p); }

/* Returns a bz_stream ready to decompress, or NULL (out of memory). */
__attribute__((export_name("dec_new"))) bz_stream *dec_new(void) {
  bz_stream *s = calloc(1, sizeof(bz_stream));
  if (s == NULL) return NULL;
  if (BZ2_bzDecompressInit(s, 0, 0) != BZ_OK) {
    free(s);
    return NULL;
  }
  return s;
}

/* Returns a bz_stream ready to compress with the given block size (1..9). */
__attribute__((export_name("enc_new"))) bz_stream *enc_new(int level) {
  bz_stream *s = calloc(1, sizeof(bz_stream));
  if (s == NULL) return NULL;
  if (BZ2_bzCompressInit(s, level, 0, 0) != BZ_OK) {
    free(s);
    return NULL;
  }
  return s;
}

/* One step of decompression: consumes from in, produces into out. Returns the
 * libbz2 status (BZ_OK, BZ_STREAM_END or a negative error). */
__attribute__((export_name("dec_run"))) int dec_run(bz_stream *s, char *in, unsigned in_len,
                                                    char *out, unsigned out_len) {
  s->next_in = in;
  s->avail_in = in_len;
  s->next_out = out;
  s->avail_out = out_len;
  return BZ2_bzDecompress(s);
}

/* One step of compression; action is BZ_RUN (0) or BZ_FINISH (2). */
__attribute__((export_name("enc_run"))) int enc_run(bz_stream *s, char *in, unsigned in_len,
                                                    char *out, unsigned out_len, int action) {
  s->next_in = in;
  s->avail_in = in_len;
  s->next_out = out;
  s->avail_out = out_len;
  return BZ2_bzCompress(s, action);
}

__attribute__((export_name("avail_in"))) unsigned avail_in(bz_stream *s) { return s->avail_in; }
__attribute__((export_name("avail_out"))) unsigned avail_out(bz_stream *s) { return s->avail_out; }

__attribute__((export_name("dec_end"))) void dec_end(bz_stream *s) {
  BZ2_bzDecompressEnd(s);
  free(s);
}

__attribute__((export_name("enc_end"))) void enc_end(bz_stream *s) {
  BZ2_bzCompressEnd(s);
  free(s);
}
