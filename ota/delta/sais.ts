/**
 * Suffix array by induced sorting (SA-IS: Nong, Zhang and Chan, "Two Efficient
 * Algorithms for Linear Time Suffix Array Construction", 2011), O(n) time.
 * The text gets a virtual sentinel smaller than every symbol, so bytes need no
 * widening; the reduced problem lives inside the output array, so the extra
 * memory is one type byte per symbol plus bucket counters.
 */

type Text = Uint8Array | Int32Array;

/**
 * Sorts the suffixes of `text` in the layout bsdiff's `qsufsort` produces:
 * `I[0] = n` (the empty suffix sorts first) and `I[1..n]` the rest in order.
 */
export function suffixArray(text: Uint8Array): Int32Array {
  const n = text.length;
  if (n >= 0x7fffffff) throw new RangeError(`suffixArray: input of ${n} bytes exceeds 2^31-2`);
  const I = new Int32Array(n + 1);
  I[0] = n;
  if (n > 0) sais(text, I.subarray(1), n, 256);
  return I;
}

function bucketBounds(T: Text, n: number, counts: Int32Array, bkt: Int32Array, ends: boolean) {
  const K = counts.length;
  if (ends) {
    let sum = 0;
    for (let c = 0; c < K; c++) {
      sum += counts[c];
      bkt[c] = sum;
    }
  } else {
    let sum = 0;
    for (let c = 0; c < K; c++) {
      bkt[c] = sum;
      sum += counts[c];
    }
  }
  void T;
  void n;
}

/** Induces L-type then S-type suffixes from the LMS suffixes already placed. */
function induce(
  T: Text,
  SA: Int32Array,
  n: number,
  stype: Uint8Array,
  counts: Int32Array,
  bkt: Int32Array,
) {
  bucketBounds(T, n, counts, bkt, false);
  // The virtual sentinel sorts first; its predecessor n-1 is always L-type.
  SA[bkt[T[n - 1]]++] = n - 1;
  for (let i = 0; i < n; i++) {
    const j = SA[i] - 1;
    if (j >= 0 && stype[j] === 0) SA[bkt[T[j]]++] = j;
  }
  bucketBounds(T, n, counts, bkt, true);
  for (let i = n - 1; i >= 0; i--) {
    const j = SA[i] - 1;
    if (j >= 0 && stype[j] === 1) SA[--bkt[T[j]]] = j;
  }
}

function sais(T: Text, SA: Int32Array, n: number, K: number): void {
  if (n === 1) {
    SA[0] = 0;
    return;
  }
  // Classify: S if smaller than the next suffix; the last symbol is L because
  // the sentinel after it is smaller still.
  const stype = new Uint8Array(n);
  for (let i = n - 2; i >= 0; i--) {
    const a = T[i], b = T[i + 1];
    stype[i] = a < b || (a === b && stype[i + 1] === 1) ? 1 : 0;
  }
  const counts = new Int32Array(K);
  for (let i = 0; i < n; i++) counts[T[i]]++;
  const bkt = new Int32Array(K);

  // Stage 1: sort the LMS substrings by induction from their bucket ends.
  SA.fill(-1);
  bucketBounds(T, n, counts, bkt, true);
  for (let i = n - 1; i >= 1; i--) {
    if (stype[i] === 1 && stype[i - 1] === 0) SA[--bkt[T[i]]] = i;
  }
  induce(T, SA, n, stype, counts, bkt);

  // Compact the sorted LMS positions into SA[0..m).
  let m = 0;
  for (let i = 0; i < n; i++) {
    const p = SA[i];
    if (p > 0 && stype[p] === 1 && stype[p - 1] === 0) SA[m++] = p;
  }
  // Name equal LMS substrings alike; names go to SA[m + p/2] (LMS positions are
  // at least two apart, and m <= n/2, so the slots never collide).
  SA.fill(-1, m, n);
  let names = 0;
  let prev = -1;
  for (let i = 0; i < m; i++) {
    const pos = SA[i];
    let differ = prev < 0;
    for (let d = 0; !differ; d++) {
      const a = pos + d, b = prev + d;
      if (a === n || b === n || T[a] !== T[b] || stype[a] !== stype[b]) {
        differ = true;
      } else if (
        d > 0 && ((stype[a] === 1 && stype[a - 1] === 0) || (stype[b] === 1 && stype[b - 1] === 0))
      ) {
        break;
      }
    }
    if (differ) {
      names++;
      prev = pos;
    }
    SA[m + (pos >> 1)] = names - 1;
  }
  for (let i = n - 1, j = n - 1; i >= m; i--) {
    if (SA[i] >= 0) SA[j--] = SA[i];
  }

  // Stage 2: sort the reduced string (recursively if names repeat).
  const s1 = SA.subarray(n - m, n);
  const sa1 = SA.subarray(0, m);
  if (names < m) {
    sais(s1, sa1, m, names);
  } else {
    for (let i = 0; i < m; i++) sa1[s1[i]] = i;
  }

  // Stage 3: map back to text positions, seed the bucket ends, induce all.
  for (let i = 1, j = 0; i < n; i++) {
    if (stype[i] === 1 && stype[i - 1] === 0) s1[j++] = i;
  }
  for (let i = 0; i < m; i++) sa1[i] = s1[sa1[i]];
  SA.fill(-1, m, n);
  bucketBounds(T, n, counts, bkt, true);
  for (let i = m - 1; i >= 0; i--) {
    const p = SA[i];
    SA[i] = -1;
    SA[--bkt[T[p]]] = p;
  }
  induce(T, SA, n, stype, counts, bkt);
}
