"""C++ source of the native executor (built by ``native.py``).

One generic loop runs any plan: the plan arrives as a table of instructions and buffers, so
the library is compiled once per machine, not once per cell, and a cell found by the search
runs natively the moment it exists. Per step it walks the instructions: a GEMM is one BLAS
call (the weights packed once per sequence where MKL's packed API is there); a run of
elementwise instructions is executed row by row, so a row's gate values stay in L1 between
instructions and every inner loop is a plain vectorisable loop over columns.

float tanh and sigmoid are computed with a vectorisable exp (range reduction to
|r| <= ln2/2, degree-7 Taylor polynomial, exponent by bit manipulation) so that the compiler can
use SIMD on them: relative error below 3e-7 (tanh uses its odd Taylor series below 0.3), NaN and
±inf handled as torch does; double uses the C library. Layer norm's row instructions take their
sums over a row in two passes (the mean, then the squared deviations from it) over vectors of
16 columns in a fixed order of partial sums (see ``row_sums``), then write the row.
"""

from ...lang.ops import INSTRUCTIONS, NORM_EPS

# Bump when the table layout handed to ``rnnlab_run`` changes; the loaded library must agree
# (checked at load) and a stale build is rebuilt. 4: instruction enum generated from the table.
# 5: row instructions (layer norm). 6: mean and rsqrt (their codes shift mul_norm's).
# 7: a third operand (c) for the fused row instructions, in the fields a GEMM keeps k in.
ABI_VERSION = 7
GEMM, REFILL = 100, 101

_TEMPLATE = r"""
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE2__)
#include <xmmintrin.h>
#define RNNLAB_MXCSR 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

// generated from the op table (rnnlab.lang.ops.INSTRUCTIONS)
enum Code : int64_t {
  @CODES@,
  GEMM = @GEMM@, REFILL = @REFILL@
};

// one instruction: 16 int64 fields; an elementwise instruction keeps its third operand (the
// fused row instructions' c; buffer -1: none) where a GEMM keeps k, its weight and transpose
enum Field {
  F_CODE = 0, F_WIDTH, F_ACC, F_DBUF, F_DCOL, F_DTOFF, F_ABUF, F_ACOL, F_ATOFF,
  F_BBUF, F_BCOL, F_BTOFF, F_K, F_WEIGHT, F_TRANS, F_BIAS, F_FIELDS,
  F_CBUF = F_K, F_CCOL = F_WEIGHT, F_CTOFF = F_TRANS
};

// strides in elements; a per-thread buffer (scratch, gradient sums) has one slice per thread
struct Buf { char* data; int64_t slices, s0, s1, per_thread; };
struct Weight { char* data; int64_t ld, stored_t; };   // stored_t: storage holds W transposed

typedef void (*gemm_t)(const char*, const char*, const int*, const int*, const int*,
                       const void*, const void*, const int*, const void*, const int*,
                       const void*, void*, const int*);
typedef size_t (*pack_size_t)(int, int, int, int);
typedef void (*spack_t)(int, int, int, int, int, int, float, const float*, int, float*);
typedef void (*dpack_t)(int, int, int, int, int, int, double, const double*, int, double*);
typedef void (*scompute_t)(int, int, int, int, int, int, const float*, int, const float*, int,
                           float, float*, int);
typedef void (*dcompute_t)(int, int, int, int, int, int, const double*, int, const double*,
                           int, double, double*, int);

struct Blas {
  gemm_t gemm;
  pack_size_t pack_size;
  void* pack;
  void* compute;
};

// ---- elementwise functions -------------------------------------------------------------------
inline float exp_reduced(float x) {  // e^x for x in [-87.3, 88.3]
  float k = x * 1.44269504088896341f;
  k = (k + 12582912.0f) - 12582912.0f;  // round to nearest integer
  float r = x - k * 0.693145751953125f;
  r = r - k * 1.42860682030941723212e-6f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid_f(float x) {
  float m = -x;
  m = m < -87.3f ? -87.3f : m;
  m = m > 88.3f ? 88.3f : m;
  float e = exp_reduced(m);
  float y = 1.0f / (1.0f + e);
  return x != x ? x : y;
}

inline float tanh_f(float x) {
  float a = std::fabs(x);
  a = a > 9.0f ? 9.0f : a;
  // |x| < 0.3: odd Taylor series to x^9; elsewhere 1 - 2 / (e^{2|x|} + 1)
  float a2 = a * a;
  float p = 62.0f / 2835;
  p = p * a2 - 17.0f / 315;
  p = p * a2 + 2.0f / 15;
  p = p * a2 - 1.0f / 3;
  float small = a + a * (p * a2);
  float big = 1.0f - 2.0f / (exp_reduced(2.0f * a) + 1.0f);
  float t = std::copysign(a < 0.3f ? small : big, x);
  return x != x ? x : t;
}

inline float sigmoid_(float x) { return sigmoid_f(x); }
inline float tanh_(float x) { return tanh_f(x); }
inline double sigmoid_(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double tanh_(double x) { return std::tanh(x); }

constexpr double NORM_EPS = @EPS@;  // layer norm's ε (rnnlab.lang.ops.NORM_EPS)

#define LOOP(EXPR)                                                        \
  if (acc) {                                                              \
    for (int64_t j = 0; j < w; ++j) d[j] += (EXPR);                       \
  } else {                                                                \
    for (int64_t j = 0; j < w; ++j) d[j] = (EXPR);                        \
  }

// ---- row functions (layer norm) ---------------------------------------------------------------
// A sum over a row as one running total is a serial chain of additions that the compiler may
// not reorder (that would change the rounding): one addition's latency per column, and it does
// not vectorise. Here the sums of a row are taken over vectors of 16 columns (GCC's and clang's
// vector extensions, which the compiler maps to the build's SIMD registers: one AVX-512
// register of floats, two AVX2 ones), in two vectors of partial sums, added up in a fixed order
// at the end (the two vectors, then a halving tree over the 16 lanes), so that the result does
// not depend on the vector width of the build. The statistics take two passes, the mean and then
// the squared deviations from it (no cancellation, so the row type's own precision is enough);
// the second pass, and the one that writes the row, read it from L1.
constexpr int VL = 16;
template <typename T>
struct VecOf { typedef T type __attribute__((vector_size(VL * sizeof(T)))); };
template <typename T>
using V = typename VecOf<T>::type;
template <typename T>
inline V<T> vload(const T* p) {
  V<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// a row read as the product of two rows, each entry rounded to the row type when read
template <typename T>
struct Product { const T* p; const T* q; };
template <typename T>
inline T entry(const T* y, int64_t j) { return y[j]; }
template <typename T>
inline T entry(Product<T> y, int64_t j) { return T(y.p[j] * y.q[j]); }
template <typename T>
inline V<T> vload(Product<T> y, int64_t c) { return vload(y.p + c) * vload(y.q + c); }
template <typename T>
inline V<T> vload(const T* y, int64_t c) { return vload(y + c); }
template <typename T>
inline bool present(const T* y) { return y != nullptr; }
template <typename T>
inline bool present(Product<T>) { return true; }

// s[i] = Σ_j f(x_j, y_j)[i] over j < w for the N terms f writes (y: 0 without a second row);
// f is generic over a vector of VL columns and a single column
template <int N, typename T, typename Y, typename F>
inline void row_sums(int64_t w, const T* x, Y y, F f, T* s) {
  const bool second = present(y);
  V<T> part[2][N] = {};
  int64_t j = 0;
  for (; j + 2 * VL <= w; j += 2 * VL)
    for (int q = 0; q < 2; ++q) {
      const int64_t c = j + q * VL;
      V<T> v[N];
      f(vload(x + c), second ? vload(y, c) : V<T>{}, v);
      for (int i = 0; i < N; ++i) part[q][i] += v[i];
    }
  for (int i = 0; i < N; ++i) {
    const V<T> both = part[0][i] + part[1][i];
    T lane[VL];
    std::memcpy(lane, &both, sizeof lane);
    for (int h = VL / 2; h > 0; h /= 2)
      for (int l = 0; l < h; ++l) lane[l] += lane[l + h];
    s[i] = lane[0];
  }
  for (; j < w; ++j) {
    T v[N];
    f(x[j], second ? entry(y, j) : T(0), v);
    for (int i = 0; i < N; ++i) s[i] += v[i];
  }
}

// The mean m and r = 1 / sqrt(σ² + ε) of one row. The first pass sums x − k about the row's
// first entry k, so that a row far from 0 next to its spread keeps its digits (the sum of x
// itself would round at the scale of the mean)
template <typename T>
inline T row_mean(int64_t w, const T* a) {
  const T k = a[0];
  T s[1];
  row_sums<1>(w, a, static_cast<const T*>(nullptr), [k](auto x, auto, auto* v) {
    v[0] = x - k;
  }, s);
  return k + s[0] / T(w);
}

template <typename T>
inline void norm_stats(int64_t w, const T* a, T& m, T& r) {
  m = row_mean(w, a);
  T s[1];
  row_sums<1>(w, a, static_cast<const T*>(nullptr), [m](auto x, auto, auto* v) {
    const auto u = x - m;
    v[0] = u * u;
  }, s);
  r = T(1) / std::sqrt(s[0] / T(w) + T(NORM_EPS));
}

// d (+)= norm(a) = (a − μ) r over one row
template <typename T>
inline void norm_row(int64_t w, bool acc, T* d, const T* a) {
  T m, r;
  norm_stats(w, a, m, r);
  LOOP((a[j] - m) * r)
}

// d (+)= the mean of a over one row, on every column
template <typename T>
inline void mean_row(int64_t w, bool acc, T* d, const T* a) {
  const T m = row_mean(w, a);
  LOOP(m)
}

// d (+)= a ⊙ norm(b) over one row: a gain times the normalised row (forward), or an output
// adjoint times it (a gain's gradient): the norm and the product in one pass, the normalised
// row never written (the same roundings as norm, then the product)
template <typename T>
inline void mul_norm_row(int64_t w, bool acc, T* d, const T* a, const T* b) {
  T m, r;
  norm_stats(w, b, m, r);
  LOOP(a[j] * ((b[j] - m) * r))
}

// d (+)= the adjoint of norm at input x for the output adjoint dy over one row (a: dy, b: x):
// r (dy − mean(dy) − x̂ mean(dy ⊙ x̂)), x̂ = (x − μ) r, with μ and r recomputed from x
// (dy: a row, or a Product of two rows formed as it is read); two passes for the sums, as
// norm_stats: Σ (x − k) and Σ dy, then Σ (x − μ)² and Σ dy (x − μ)
template <typename T, typename Y>
inline void norm_bwd_of(int64_t w, bool acc, T* d, Y a, const T* b) {
  const T k = b[0];
  T s[2];
  row_sums<2>(w, b, a, [k](auto x, auto dy, auto* v) {
    v[0] = x - k;
    v[1] = dy;
  }, s);
  const T m = k + s[0] / T(w), g1 = s[1] / T(w);
  row_sums<2>(w, b, a, [m](auto x, auto dy, auto* v) {
    const auto u = x - m;
    v[0] = u * u;
    v[1] = dy * u;
  }, s);
  const T r = T(1) / std::sqrt(s[0] / T(w) + T(NORM_EPS)), g2 = s[1] * r / T(w);
  LOOP(r * (entry(a, j) - g1 - (b[j] - m) * r * g2))
}

template <typename T>
inline void norm_bwd_row(int64_t w, bool acc, T* d, const T* a, const T* b) {
  norm_bwd_of(w, acc, d, a, b);
}

// d (+)= a ⊙ norm(b) + c over one row (mul_norm and add in one pass; the compiler may
// contract the product and the sum into one fused multiply-add)
template <typename T>
inline void mul_norm_add_row(int64_t w, bool acc, T* d, const T* a, const T* b, const T* c) {
  T m, r;
  norm_stats(w, b, m, r);
  LOOP(T(a[j] * ((b[j] - m) * r)) + c[j])
}

// d (+)= the adjoint of norm at x for the output adjoint dy = a ⊙ c (b: x), the product
// formed where it is read, never written
template <typename T>
inline void norm_bwd_mul_row(int64_t w, bool acc, T* d, const T* a, const T* b, const T* c) {
  const Product<T> dy{a, c};
  norm_bwd_of(w, acc, d, dy, b);
}

template <typename T>
void elementwise(int64_t code, bool acc, int64_t w, T* d, const T* a, const T* b, const T* c) {
  switch (code) {
@CASES@
    default: break;
  }
}

// Subnormal floats (below ~1.2e-38, e.g. the derivative of a saturated gate) cost a microcode
// assist of ~100 cycles per operation on x86. Inside the loop they are flushed to zero (FTZ)
// and read as zero (DAZ), as oneDNN and TensorFlow do on CPU; the caller's mode is restored.
struct FlushSubnormals {
#ifdef RNNLAB_MXCSR
  unsigned int saved;
  FlushSubnormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }  // FTZ | DAZ
  ~FlushSubnormals() { _mm_setcsr(saved); }
#endif
};

// ---- the loop ---------------------------------------------------------------------------------
// Rows of a batch never meet inside a step, so the loop can run in two ways:
// * split: each thread owns a block of batch rows and runs the whole time loop on it, with
//   single-threaded GEMMs; no synchronisation between steps (small and medium sizes);
// * shared: all threads work on every step, BLAS splitting each GEMM, stages split by rows.
template <typename T>
struct Runner {
  const int64_t* code;
  int64_t n;
  std::vector<Buf> bufs;
  std::vector<Weight> weights;
  const int64_t* sizes;
  int64_t B, steps;
  int64_t threads = 1;  // at most as many as per-thread buffers have slices
  int64_t parallel_work = 1 << 14;  // shared mode: stage elements from which rows are split
  bool split = false;
  Blas blas;
  bool packed_ok;

  T* at(int64_t buf, int64_t col, int64_t toff, int64_t t) const {
    const Buf& x = bufs[buf];
    int64_t slice = x.per_thread ? 0 : (t + toff) % x.slices;
    return reinterpret_cast<T*>(x.data) + slice * x.s0 + col;
  }
  int64_t thread_stride(int64_t buf) const {
    return buf >= 0 && bufs[buf].per_thread ? bufs[buf].s0 : 0;
  }
  int64_t rows(int64_t t) const { return sizes ? sizes[t] : B; }

  // rows [lo, lo + m) of C(n) = [bias +] [C +] A(k) @ op(W)
  void gemm(int64_t index, int64_t t, int64_t lo, int64_t m, const std::vector<void*>& packed,
            int64_t packed_rows) {
    const int64_t* ins = code + index * F_FIELDS;
    const int64_t nn = ins[F_WIDTH], k = ins[F_K];
    const Weight& wt = weights[ins[F_WEIGHT]];
    bool trans = (ins[F_TRANS] != 0) != (wt.stored_t != 0);
    const int64_t ldc = bufs[ins[F_DBUF]].s1, lda = bufs[ins[F_ABUF]].s1;
    T* C = at(ins[F_DBUF], ins[F_DCOL], ins[F_DTOFF], t) + lo * ldc;
    const T* A = at(ins[F_ABUF], ins[F_ACOL], ins[F_ATOFF], t) + lo * lda;
    T beta = ins[F_ACC] ? T(1) : T(0);
    if (ins[F_BIAS]) {  // rows of a hoisted input, or one shared vector (row stride 0)
      const int64_t sb = bufs[ins[F_BBUF]].s1;
      const T* bias = at(ins[F_BBUF], ins[F_BCOL], ins[F_BTOFF], t) + lo * sb;
      for (int64_t r = 0; r < m; ++r) {
        T* c = C + r * ldc;
        const T* b = bias + r * sb;
        if (beta != T(0)) {
          for (int64_t j = 0; j < nn; ++j) c[j] += b[j];
        } else {
          std::memcpy(c, b, sizeof(T) * nn);
        }
      }
      beta = T(1);
    }
    int M = static_cast<int>(nn), N = static_cast<int>(m), K = static_cast<int>(k);
    int ldw = static_cast<int>(wt.ld), ia = static_cast<int>(lda), ic = static_cast<int>(ldc);
    void* p = packed.empty() ? nullptr : packed[index];
    if (p && m == packed_rows) {
      if (sizeof(T) == 4)
        reinterpret_cast<scompute_t>(blas.compute)(102, 151, 111, M, N, K,
            reinterpret_cast<const float*>(p), M, reinterpret_cast<const float*>(A), ia,
            static_cast<float>(beta), reinterpret_cast<float*>(C), ic);
      else
        reinterpret_cast<dcompute_t>(blas.compute)(102, 151, 111, M, N, K,
            reinterpret_cast<const double*>(p), M, reinterpret_cast<const double*>(A), ia,
            static_cast<double>(beta), reinterpret_cast<double*>(C), ic);
      return;
    }
    T one = T(1);
    blas.gemm(trans ? "T" : "N", "N", &M, &N, &K, &one, wt.data, &ldw, A, &ia, &beta, C, &ic);
  }

  // every GEMM's weight packed for blocks of ``rows`` rows (empty without the packed API)
  std::vector<void*> pack_weights(int64_t rows_) {
    std::vector<void*> packed;
    // packing reads the whole weight once, as one GEMM does: worth it over several steps only
    if (!packed_ok || rows_ <= 0 || steps < 3) return packed;
    packed.assign(n, nullptr);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t* ins = code + i * F_FIELDS;
      if (ins[F_CODE] != GEMM) continue;
      const Weight& wt = weights[ins[F_WEIGHT]];
      bool trans = (ins[F_TRANS] != 0) != (wt.stored_t != 0);
      int M = static_cast<int>(ins[F_WIDTH]), N = static_cast<int>(rows_);
      int K = static_cast<int>(ins[F_K]);
      size_t bytes = blas.pack_size(161, M, N, K);
      void* dest = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
      if (!dest) continue;
      if (sizeof(T) == 4)
        reinterpret_cast<spack_t>(blas.pack)(102, 161, trans ? 112 : 111, M, N, K, 1.0f,
            reinterpret_cast<const float*>(wt.data), static_cast<int>(wt.ld),
            reinterpret_cast<float*>(dest));
      else
        reinterpret_cast<dpack_t>(blas.pack)(102, 161, trans ? 112 : 111, M, N, K, 1.0,
            reinterpret_cast<const double*>(wt.data), static_cast<int>(wt.ld),
            reinterpret_cast<double*>(dest));
      packed[i] = dest;
    }
    return packed;
  }

  // A run of elementwise instructions over rows [lo, hi) that are active at step t; in shared
  // mode split between threads by rows.
  void stage(int64_t begin, int64_t end, int64_t t, int64_t lo, int64_t hi, int64_t tid,
             bool may_share) {
    const int64_t m = std::min(hi, rows(t));
    const int64_t next = (t + 1 < steps) ? rows(t + 1) : 0;
    struct Row { const int64_t* ins; T *d, *a, *b, *c; int64_t sd, sa, sb, sc, pd, pa, pb, pc; };
    Row ops[64];
    std::vector<Row> more;
    Row* list = end - begin <= 64 ? ops : (more.resize(end - begin), more.data());
    int64_t count = 0, work = 0;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t* ins = code + i * F_FIELDS;
      Row op{ins, at(ins[F_DBUF], ins[F_DCOL], ins[F_DTOFF], t), nullptr, nullptr, nullptr,
             bufs[ins[F_DBUF]].s1, 0, 0, 0, thread_stride(ins[F_DBUF]),
             thread_stride(ins[F_ABUF]), thread_stride(ins[F_BBUF]), 0};
      if (ins[F_ABUF] >= 0) {
        op.a = at(ins[F_ABUF], ins[F_ACOL], ins[F_ATOFF], t);
        op.sa = bufs[ins[F_ABUF]].s1;
      }
      if (ins[F_BBUF] >= 0) {
        op.b = at(ins[F_BBUF], ins[F_BCOL], ins[F_BTOFF], t);
        op.sb = bufs[ins[F_BBUF]].s1;
      }
      if (ins[F_CODE] != REFILL && ins[F_CBUF] >= 0) {
        op.c = at(ins[F_CBUF], ins[F_CCOL], ins[F_CTOFF], t);
        op.sc = bufs[ins[F_CBUF]].s1;
        op.pc = thread_stride(ins[F_CBUF]);
      }
      if (ins[F_CODE] == REFILL) {  // rows that turn active going backward
        for (int64_t r = std::max(lo, next); r < m; ++r)
          std::memcpy(op.d + r * op.sd, op.a + r * op.sa, sizeof(T) * ins[F_WIDTH]);
        continue;
      }
      work += ins[F_WIDTH];
      list[count++] = op;
    }
    auto rows_of = [&](int64_t r0, int64_t r1, int64_t id) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t i = 0; i < count; ++i) {
          const Row& op = list[i];
          elementwise<T>(op.ins[F_CODE], op.ins[F_ACC] != 0, op.ins[F_WIDTH],
                         op.d + r * op.sd + id * op.pd,
                         op.a ? op.a + r * op.sa + id * op.pa : nullptr,
                         op.b ? op.b + r * op.sb + id * op.pb : nullptr,
                         op.c ? op.c + r * op.sc + id * op.pc : nullptr);
        }
    };
#ifdef _OPENMP
    const int64_t nt = std::min<int64_t>(threads, m - lo);
    if (may_share && nt > 1 && work * (m - lo) >= parallel_work) {
#pragma omp parallel num_threads(static_cast<int>(nt))
      {
        FlushSubnormals flush;
        const int64_t id = omp_get_thread_num(), k = omp_get_num_threads();
        rows_of(lo + (m - lo) * id / k, lo + (m - lo) * (id + 1) / k, id);
      }
      return;
    }
#endif
    rows_of(lo, m, tid);
  }

  void step(int64_t t, int64_t lo, int64_t hi, int64_t tid, const std::vector<void*>& packed,
            int64_t packed_rows, bool may_share) {
    const int64_t m = std::min(hi, rows(t)) - lo;
    if (m <= 0) return;
    int64_t i = 0;
    while (i < n) {
      if (code[i * F_FIELDS + F_CODE] == GEMM) {
        gemm(i, t, lo, m, packed, packed_rows);
        ++i;
        continue;
      }
      int64_t j = i;
      while (j < n && code[j * F_FIELDS + F_CODE] != GEMM) ++j;
      stage(i, j, t, lo, hi, tid, may_share);
      i = j;
    }
  }

  void loop(bool reverse, int64_t lo, int64_t hi, int64_t tid, bool may_share) {
    std::vector<void*> packed = pack_weights(hi - lo);
    if (reverse)
      for (int64_t t = steps - 1; t >= 0; --t) step(t, lo, hi, tid, packed, hi - lo, may_share);
    else
      for (int64_t t = 0; t < steps; ++t) step(t, lo, hi, tid, packed, hi - lo, may_share);
    for (void* p : packed) std::free(p);
  }

  void run(bool reverse) {
#ifdef _OPENMP
    const int64_t nt = std::min(threads, B);
    if (split && nt > 1) {
#pragma omp parallel num_threads(static_cast<int>(nt))
      {
        FlushSubnormals flush;
        const int64_t id = omp_get_thread_num(), k = omp_get_num_threads();
        loop(reverse, B * id / k, B * (id + 1) / k, id, false);
      }
      return;
    }
#endif
    loop(reverse, 0, B, 0, true);
  }
};

}  // namespace

extern "C" int rnnlab_run(int64_t dtype, const int64_t* code, int64_t n, const int64_t* bufs,
                          int64_t num_bufs, const int64_t* weights, int64_t num_weights,
                          const int64_t* sizes, int64_t B, int64_t steps, int64_t reverse,
                          const int64_t* blas, int64_t threads, int64_t parallel_work,
                          int64_t split) {
  auto fill = [&](auto& r) {
    r.code = code;
    r.n = n;
    for (int64_t i = 0; i < num_bufs; ++i)
      r.bufs.push_back(Buf{reinterpret_cast<char*>(bufs[5 * i]), bufs[5 * i + 1],
                           bufs[5 * i + 2], bufs[5 * i + 3], bufs[5 * i + 4]});
    for (int64_t i = 0; i < num_weights; ++i)
      r.weights.push_back(Weight{reinterpret_cast<char*>(weights[3 * i]), weights[3 * i + 1],
                                 weights[3 * i + 2]});
    r.sizes = sizes;
    r.B = B;
    r.steps = steps;
    r.threads = threads > 0 ? threads : 1;
    r.parallel_work = parallel_work;
    r.split = split != 0;
  };
  FlushSubnormals flush;
  if (dtype == 0) {
    Runner<float> r;
    fill(r);
    r.blas = Blas{reinterpret_cast<gemm_t>(blas[0]), reinterpret_cast<pack_size_t>(blas[2]),
                  reinterpret_cast<void*>(blas[3]), reinterpret_cast<void*>(blas[4])};
    r.packed_ok = blas[2] && blas[3] && blas[4];
    if (!r.blas.gemm) return 2;
    r.run(reverse != 0);
  } else {
    Runner<double> r;
    fill(r);
    r.blas = Blas{reinterpret_cast<gemm_t>(blas[1]), reinterpret_cast<pack_size_t>(blas[5]),
                  reinterpret_cast<void*>(blas[6]), reinterpret_cast<void*>(blas[7])};
    r.packed_ok = blas[5] && blas[6] && blas[7];
    if (!r.blas.gemm) return 2;
    r.run(reverse != 0);
  }
  return 0;
}

// Seconds per call of C(m x n) = A(m x k) @ W(k x n) in float32 with the same BLAS calls as the
// loop (packed weight when asked and available): the machine's GEMM speed for a shape.
extern "C" double rnnlab_time_gemm(int64_t m, int64_t n, int64_t k, int64_t reps,
                                   int64_t packed, const int64_t* blas) {
  std::vector<float> A(m * k), W(k * n), C(m * n);
  for (size_t i = 0; i < A.size(); ++i) A[i] = float(i % 97) / 97.0f - 0.5f;
  for (size_t i = 0; i < W.size(); ++i) W[i] = float(i % 89) / 89.0f - 0.5f;
  int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
  float one = 1.0f, zero = 0.0f;
  void* dest = nullptr;
  if (packed && blas[2] && blas[3] && blas[4]) {
    size_t bytes = reinterpret_cast<pack_size_t>(blas[2])(161, M, N, K);
    dest = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    reinterpret_cast<spack_t>(blas[3])(102, 161, 111, M, N, K, 1.0f, W.data(), M,
                                       reinterpret_cast<float*>(dest));
  }
  auto call = [&]() {
    if (dest)
      reinterpret_cast<scompute_t>(blas[4])(102, 151, 111, M, N, K,
          reinterpret_cast<const float*>(dest), M, A.data(), K, 0.0f, C.data(), M);
    else
      reinterpret_cast<gemm_t>(blas[0])("N", "N", &M, &N, &K, &one, W.data(), &M, A.data(), &K,
                                        &zero, C.data(), &M);
  };
  call();
  auto start = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < reps; ++r) call();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::free(dest);
  return seconds / reps;
}

extern "C" int rnnlab_abi_version() { return @ABI@; }

extern "C" int rnnlab_openmp() {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}
"""


def _generate() -> str:
    codes = ", ".join(f"{ins.name.upper()} = {k}" for k, ins in enumerate(INSTRUCTIONS))
    cases = "\n".join(f"    case {ins.name.upper()}: {ins.cpp} break;" if ins.row else
                      f"    case {ins.name.upper()}: LOOP({ins.cpp}) break;"
                      for ins in INSTRUCTIONS if ins.cpp is not None)
    return (_TEMPLATE.replace("@CODES@", codes).replace("@CASES@", cases)
            .replace("@GEMM@", str(GEMM)).replace("@REFILL@", str(REFILL))
            .replace("@ABI@", str(ABI_VERSION)).replace("@EPS@", repr(NORM_EPS)))


SOURCE = _generate()
