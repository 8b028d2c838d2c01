/*
 * edged bsdiff core, compiled to wasm32 (build.sh): the two hot loops of
 * bsdiff, kept out of JavaScript because they compare long byte ranges.
 *
 * 1. sais(): suffix array by induced sorting (Nong, Zhang, Chan 2011) with a
 *    virtual sentinel, in the layout bsdiff's qsufsort produces
 *    (I[0] = n, the empty suffix, then the sorted suffixes).
 * 2. diff_run(): the matching loop of bsdiff 4.3 (Debian: 32-bit offsets),
 *    step for step, emitting control triples into a caller-drained buffer.
 *
 * Everything is edged's own code; the algorithm follows the published
 * descriptions so the output equals Debian bsdiff's byte for byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))

EXPORT(dc_alloc) void *dc_alloc(size_t n) { return malloc(n); }
EXPORT(dc_free) void dc_free(void *p) { free(p); }

/* ---------- SA-IS ---------- */

#define IS_LMS(i) ((i) > 0 && stype[(i)] && !stype[(i)-1])

static void bucket_bounds(const int32_t *counts, int32_t *bkt, int32_t K, int ends) {
  int32_t sum = 0;
  for (int32_t c = 0; c < K; c++) {
    if (ends) {
      sum += counts[c];
      bkt[c] = sum;
    } else {
      bkt[c] = sum;
      sum += counts[c];
    }
  }
}

static int sais32(const int32_t *T, int32_t *SA, int32_t n, int32_t K);

/* One instantiation per symbol type: bytes at the top, names in recursion. */
#define SAIS_BODY(SYM)                                                             \
  if (n == 1) {                                                                    \
    SA[0] = 0;                                                                     \
    return 0;                                                                      \
  }                                                                                \
  uint8_t *stype = malloc((size_t)n);                                              \
  int32_t *counts = calloc((size_t)K, sizeof(int32_t));                            \
  int32_t *bkt = malloc((size_t)K * sizeof(int32_t));                              \
  if (!stype || !counts || !bkt) {                                                 \
    free(stype);                                                                   \
    free(counts);                                                                  \
    free(bkt);                                                                     \
    return -1;                                                                     \
  }                                                                                \
  stype[n - 1] = 0;                                                                \
  for (int32_t i = n - 2; i >= 0; i--) {                                           \
    SYM a = T[i], b = T[i + 1];                                                    \
    stype[i] = (a < b || (a == b && stype[i + 1])) ? 1 : 0;                        \
  }                                                                                \
  for (int32_t i = 0; i < n; i++) counts[T[i]]++;                                  \
  /* Stage 1: sort LMS substrings by induction from the bucket ends. */            \
  for (int32_t i = 0; i < n; i++) SA[i] = -1;                                      \
  bucket_bounds(counts, bkt, K, 1);                                                \
  for (int32_t i = n - 1; i >= 1; i--)                                             \
    if (IS_LMS(i)) SA[--bkt[T[i]]] = i;                                            \
  INDUCE(SYM);                                                                     \
  int32_t m = 0;                                                                   \
  for (int32_t i = 0; i < n; i++) {                                                \
    int32_t p = SA[i];                                                             \
    if (IS_LMS(p)) SA[m++] = p;                                                    \
  }                                                                                \
  for (int32_t i = m; i < n; i++) SA[i] = -1;                                      \
  int32_t names = 0, prev = -1;                                                    \
  for (int32_t i = 0; i < m; i++) {                                                \
    int32_t pos = SA[i];                                                           \
    int differ = prev < 0;                                                         \
    for (int32_t d = 0; !differ; d++) {                                            \
      int32_t a = pos + d, b = prev + d;                                           \
      if (a == n || b == n || T[a] != T[b] || stype[a] != stype[b]) {              \
        differ = 1;                                                                \
      } else if (d > 0 && (IS_LMS(a) || IS_LMS(b))) {                              \
        break;                                                                     \
      }                                                                            \
    }                                                                              \
    if (differ) {                                                                  \
      names++;                                                                     \
      prev = pos;                                                                  \
    }                                                                              \
    SA[m + (pos >> 1)] = names - 1;                                                \
  }                                                                                \
  for (int32_t i = n - 1, j = n - 1; i >= m; i--)                                  \
    if (SA[i] >= 0) SA[j--] = SA[i];                                               \
  /* Stage 2: the reduced string sits in SA[n-m..n), its SA in SA[0..m). */        \
  int32_t *s1 = SA + n - m;                                                        \
  if (names < m) {                                                                 \
    free(bkt);                                                                     \
    bkt = NULL;                                                                    \
    if (sais32(s1, SA, m, names) != 0) {                                           \
      free(stype);                                                                 \
      free(counts);                                                                \
      return -1;                                                                   \
    }                                                                              \
    bkt = malloc((size_t)K * sizeof(int32_t));                                     \
    if (!bkt) {                                                                    \
      free(stype);                                                                 \
      free(counts);                                                                \
      return -1;                                                                   \
    }                                                                              \
  } else {                                                                         \
    for (int32_t i = 0; i < m; i++) SA[s1[i]] = i;                                 \
  }                                                                                \
  /* Stage 3: map back, seed bucket ends in order, induce everything. */           \
  for (int32_t i = 1, j = 0; i < n; i++)                                           \
    if (IS_LMS(i)) s1[j++] = i;                                                    \
  for (int32_t i = 0; i < m; i++) SA[i] = s1[SA[i]];                               \
  for (int32_t i = m; i < n; i++) SA[i] = -1;                                      \
  bucket_bounds(counts, bkt, K, 1);                                                \
  for (int32_t i = m - 1; i >= 0; i--) {                                           \
    int32_t p = SA[i];                                                             \
    SA[i] = -1;                                                                    \
    SA[--bkt[T[p]]] = p;                                                           \
  }                                                                                \
  INDUCE(SYM);                                                                     \
  free(stype);                                                                     \
  free(counts);                                                                    \
  free(bkt);                                                                       \
  return 0;

/* L-type suffixes from the left (the virtual sentinel first), then S-type
 * from the right. */
#define INDUCE(SYM)                                                                \
  do {                                                                             \
    bucket_bounds(counts, bkt, K, 0);                                              \
    SA[bkt[T[n - 1]]++] = n - 1;                                                   \
    for (int32_t i = 0; i < n; i++) {                                              \
      int32_t j = SA[i] - 1;                                                       \
      if (j >= 0 && !stype[j]) SA[bkt[T[j]]++] = j;                                \
    }                                                                              \
    bucket_bounds(counts, bkt, K, 1);                                              \
    for (int32_t i = n - 1; i >= 0; i--) {                                         \
      int32_t j = SA[i] - 1;                                                       \
      if (j >= 0 && stype[j]) SA[--bkt[T[j]]] = j;                                 \
    }                                                                              \
  } while (0)

static int sais32(const int32_t *T, int32_t *SA, int32_t n, int32_t K) { SAIS_BODY(int32_t) }
static int sais8(const uint8_t *T, int32_t *SA, int32_t n) {
  const int32_t K = 256;
  SAIS_BODY(uint8_t)
}

/* I must hold n + 1 entries. Returns 0, or -1 when out of memory. */
EXPORT(dc_suffix_array) int dc_suffix_array(const uint8_t *text, int32_t n, int32_t *I) {
  I[0] = n;
  if (n == 0) return 0;
  return sais8(text, I + 1, n);
}

/* ---------- bsdiff matching loop ---------- */

/* Length of the common prefix of a and b, at most len; 16 bytes per step
 * (wasm SIMD128, four at a time while equal), then 8, then 1. */
static inline int32_t common_prefix(const uint8_t *a, const uint8_t *b, int32_t len) {
  int32_t i = 0;
  while (i + 64 <= len) {
    v128_t e0 = wasm_i8x16_eq(wasm_v128_load(a + i), wasm_v128_load(b + i));
    v128_t e1 = wasm_i8x16_eq(wasm_v128_load(a + i + 16), wasm_v128_load(b + i + 16));
    v128_t e2 = wasm_i8x16_eq(wasm_v128_load(a + i + 32), wasm_v128_load(b + i + 32));
    v128_t e3 = wasm_i8x16_eq(wasm_v128_load(a + i + 48), wasm_v128_load(b + i + 48));
    if (!wasm_i8x16_all_true(wasm_v128_and(wasm_v128_and(e0, e1), wasm_v128_and(e2, e3)))) break;
    i += 64;
  }
  while (i + 16 <= len) {
    v128_t eq = wasm_i8x16_eq(wasm_v128_load(a + i), wasm_v128_load(b + i));
    uint32_t mask = wasm_i8x16_bitmask(eq);
    if (mask != 0xffff) return i + __builtin_ctz(~mask);
    i += 16;
  }
  while (i + 8 <= len) {
    uint64_t x, y;
    memcpy(&x, a + i, 8);
    memcpy(&y, b + i, 8);
    if (x != y) return i + (__builtin_ctzll(x ^ y) >> 3);
    i += 8;
  }
  while (i < len && a[i] == b[i]) i++;
  return i;
}

/* The first TREE_LEVELS levels of every binary search visit the same
 * midpoints, so they are laid out as an implicit binary tree (node k has
 * children 2k and 2k+1) holding each midpoint's suffix position and its first
 * 8 bytes big-endian: most comparisons finish on that key without the two
 * cache misses of fetching I[x] and old[I[x]]. */
#define TREE_LEVELS 20

typedef struct {
  uint64_t key; /* old[pos..pos+8) big-endian, zero-padded */
  int32_t pos;  /* I[x] */
  int32_t klen; /* min(8, oldsize - pos) */
} tree_node;

static uint64_t load_key(const uint8_t *p, int32_t avail) {
  uint64_t k = 0;
  for (int32_t i = 0; i < 8; i++) k = (k << 8) | (i < avail ? p[i] : 0);
  return k;
}

/* Recursion depth is at most TREE_LEVELS. */
static void build_tree(tree_node *tree, int32_t cap, const int32_t *I, const uint8_t *old,
                       int32_t oldsize, int32_t k, int32_t st, int32_t en) {
  if (k >= cap || en - st < 2) return;
  int32_t x = st + (en - st) / 2;
  int32_t pos = I[x];
  int32_t avail = oldsize - pos;
  tree[k].pos = pos;
  tree[k].klen = avail < 8 ? avail : 8;
  tree[k].key = load_key(old + pos, avail);
  build_tree(tree, cap, I, old, oldsize, 2 * k, st, x);
  build_tree(tree, cap, I, old, oldsize, 2 * k + 1, x, en);
}

/* bsdiff.c search(): binary search of the suffix array for the longest
 * match of new[0..newsize). Every comparison decides exactly as bsdiff's
 * memcmp does, so the result is the same, but (1) the top levels compare on
 * the tree's cached 8-byte keys, and (2) a comparison starts after the prefix
 * the query already shares with both ends of the range (all suffixes between
 * two sorted suffixes share their common prefix), so a long match is compared
 * about once instead of once per halving. */
static int32_t search(const tree_node *tree, int32_t cap, const int32_t *I, const uint8_t *old,
                      int32_t oldsize, const uint8_t *new, int32_t newsize, int32_t *pos) {
  int32_t st = 0, en = oldsize;
  /* Exact common-prefix lengths of the query with I[st] and I[en]; -1 while
   * unknown. I[0] is the empty suffix, so lcp_st starts exact at 0. */
  int32_t lcp_st = 0, lcp_en = -1;
  const uint64_t qkey = load_key(new, newsize);
  int32_t k = 1;
  while (en - st >= 2) {
    int32_t x = st + (en - st) / 2;
    int32_t o, len, i, less;
    if (k < cap) {
      const tree_node *t = &tree[k];
      o = t->pos;
      len = oldsize - o < newsize ? oldsize - o : newsize;
      int32_t klen = len < 8 ? len : 8;
      uint64_t diff = t->key ^ qkey;
      int32_t at = diff ? __builtin_clzll(diff) >> 3 : 8;
      if (at < klen) {
        /* The first difference is inside the key: big-endian keys order as the bytes do. */
        i = at;
        less = t->key < qkey;
      } else if (len <= 8) {
        i = len;
        less = 0;
      } else {
        int32_t skip = lcp_en < 0 ? 8 : (lcp_st < lcp_en ? lcp_st : lcp_en);
        if (skip < 8) skip = 8;
        if (skip > len) skip = len;
        i = skip + common_prefix(old + o + skip, new + skip, len - skip);
        less = i < len && old[o + i] < new[i];
      }
    } else {
      o = I[x];
      len = oldsize - o < newsize ? oldsize - o : newsize;
      int32_t skip = lcp_en < 0 ? 0 : (lcp_st < lcp_en ? lcp_st : lcp_en);
      if (skip > len) skip = len;
      i = skip + common_prefix(old + o + skip, new + skip, len - skip);
      less = i < len && old[o + i] < new[i];
    }
    /* less == (memcmp(old + I[x], new, len) < 0) */
    if (less) {
      st = x;
      lcp_st = i;
      k = 2 * k + 1;
    } else {
      en = x;
      lcp_en = i;
      k = 2 * k;
    }
  }
  int32_t a = I[st], b = I[en];
  int32_t x = lcp_st;
  int32_t y = lcp_en >= 0
                  ? lcp_en
                  : common_prefix(old + b, new, oldsize - b < newsize ? oldsize - b : newsize);
  if (x > y) {
    *pos = a;
    return x;
  }
  *pos = b;
  return y;
}

/* The loop state between calls, so the caller can drain control triples and
 * report progress. */
typedef struct {
  tree_node *tree;
  int32_t tree_cap;
  const int32_t *I;
  const uint8_t *old, *new;
  uint8_t *db, *eb;
  int32_t oldsize, newsize;
  int32_t scan, len, pos, lastscan, lastpos, lastoffset;
  int32_t dblen, eblen;
  int32_t *ctrl; /* triples (x, y, z) */
  int32_t ctrl_cap, ctrl_len;
} diff_state;

EXPORT(dc_diff_new)
diff_state *dc_diff_new(const int32_t *I, const uint8_t *old, int32_t oldsize,
                        const uint8_t *new, int32_t newsize, uint8_t *db, uint8_t *eb,
                        int32_t *ctrl, int32_t ctrl_cap) {
  diff_state *s = calloc(1, sizeof(diff_state));
  if (!s) return NULL;
  /* A search over oldsize + 1 entries halves at most ~log2(oldsize) times. */
  int32_t cap = 2;
  while (cap < (1 << TREE_LEVELS) && cap / 2 < oldsize) cap *= 2;
  s->tree_cap = cap;
  s->tree = calloc((size_t)cap, sizeof(tree_node));
  if (!s->tree) {
    free(s);
    return NULL;
  }
  build_tree(s->tree, cap, I, old, oldsize, 1, 0, oldsize);
  s->I = I;
  s->old = old;
  s->new = new;
  s->oldsize = oldsize;
  s->newsize = newsize;
  s->db = db;
  s->eb = eb;
  s->ctrl = ctrl;
  s->ctrl_cap = ctrl_cap;
  return s;
}

EXPORT(dc_diff_scan) int32_t dc_diff_scan(diff_state *s) { return s->scan; }
EXPORT(dc_diff_dblen) int32_t dc_diff_dblen(diff_state *s) { return s->dblen; }
EXPORT(dc_diff_eblen) int32_t dc_diff_eblen(diff_state *s) { return s->eblen; }

/* Runs bsdiff.c's main loop until the control buffer is full or the new file
 * is done. Returns the number of triples in the buffer; 0 with scan ==
 * newsize means finished. The caller empties the buffer between calls. */
EXPORT(dc_diff_run) int32_t dc_diff_run(diff_state *s) {
  const int32_t *I = s->I;
  const uint8_t *old = s->old, *new = s->new;
  const int32_t oldsize = s->oldsize, newsize = s->newsize;
  int32_t scan = s->scan, len = s->len, pos = s->pos;
  int32_t lastscan = s->lastscan, lastpos = s->lastpos, lastoffset = s->lastoffset;
  s->ctrl_len = 0;
  while (scan < newsize && s->ctrl_len < s->ctrl_cap) {
    int32_t oldscore = 0;
    int32_t scsc;
    for (scsc = scan += len; scan < newsize; scan++) {
      len = search(s->tree, s->tree_cap, I, old, oldsize, new + scan, newsize - scan, &pos);
      for (; scsc < scan + len; scsc++)
        if (scsc + lastoffset < oldsize && old[scsc + lastoffset] == new[scsc]) oldscore++;
      if ((len == oldscore && len != 0) || len > oldscore + 8) break;
      if (scan + lastoffset < oldsize && old[scan + lastoffset] == new[scan]) oldscore--;
    }
    if (len != oldscore || scan == newsize) {
      int32_t s_ = 0, Sf = 0, lenf = 0;
      for (int32_t i = 0; lastscan + i < scan && lastpos + i < oldsize;) {
        if (old[lastpos + i] == new[lastscan + i]) s_++;
        i++;
        if (s_ * 2 - i > Sf * 2 - lenf) {
          Sf = s_;
          lenf = i;
        }
      }
      int32_t lenb = 0;
      if (scan < newsize) {
        int32_t Sb = 0;
        s_ = 0;
        for (int32_t i = 1; scan >= lastscan + i && pos >= i; i++) {
          if (old[pos - i] == new[scan - i]) s_++;
          if (s_ * 2 - i > Sb * 2 - lenb) {
            Sb = s_;
            lenb = i;
          }
        }
      }
      if (lastscan + lenf > scan - lenb) {
        int32_t overlap = (lastscan + lenf) - (scan - lenb);
        int32_t Ss = 0, lens = 0;
        s_ = 0;
        for (int32_t i = 0; i < overlap; i++) {
          if (new[lastscan + lenf - overlap + i] == old[lastpos + lenf - overlap + i]) s_++;
          if (new[scan - lenb + i] == old[pos - lenb + i]) s_--;
          if (s_ > Ss) {
            Ss = s_;
            lens = i + 1;
          }
        }
        lenf += lens - overlap;
        lenb -= lens;
      }
      for (int32_t i = 0; i < lenf; i++)
        s->db[s->dblen + i] = new[lastscan + i] - old[lastpos + i];
      int32_t extra = (scan - lenb) - (lastscan + lenf);
      memcpy(s->eb + s->eblen, new + lastscan + lenf, (size_t)extra);
      s->dblen += lenf;
      s->eblen += extra;
      int32_t *t = s->ctrl + 3 * s->ctrl_len++;
      t[0] = lenf;
      t[1] = extra;
      t[2] = (pos - lenb) - (lastpos + lenf);
      lastscan = scan - lenb;
      lastpos = pos - lenb;
      lastoffset = pos - scan;
    }
  }
  s->scan = scan;
  s->len = len;
  s->pos = pos;
  s->lastscan = lastscan;
  s->lastpos = lastpos;
  s->lastoffset = lastoffset;
  return s->ctrl_len;
}
