// Kernels for the fused decoder ops on the CPU: LayerNorm, causal attention with a padding mask,
// the embedding sum, and the GEMM epilogue (GELU, residual). Float32, vectorised by the compiler
// (exp/tanh/erf by polynomials, no libm calls in the loops), rows spread over the thread pool.
#pragma once

#include <cstdint>

#include "backends/cpu/thread_pool.h"

namespace gptrt::cpu {

/// y[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta for `rows` rows of `e`.
void layer_norm_rows(const float* x, const float* gamma, const float* beta, float eps, float* y,
                     int64_t rows, int64_t e, ThreadPool& pool);

/// After a GEMM tile: c = act(c) + residual over `rows` x `cols` (leading dims ldc, ldr).
/// act: reference::kAct*; residual may be null.
void gemm_epilogue(float* c, int64_t ldc, int64_t rows, int64_t cols, int act,
                   const float* residual, int64_t ldr);

/// Where attention reads: query i of row r at q + (r * q_batch + i) * q_row, key/value j at
/// k/v + (r * kv_batch + j) * kv_row (heads of size e/heads side by side), key j of row r valid
/// when key_valid[r * valid_batch + j] (null = all valid).
struct AttentionView {
  const float* q;
  int64_t q_batch, q_row;
  const float* k;
  const float* v;
  int64_t kv_batch, kv_row;
  const uint8_t* key_valid;
  int64_t valid_batch;
};

/// Queries 0..t-1 (at positions past..past+t-1) attend to keys 0..past+i -> out [b, t, e].
void attention_core(const AttentionView& view, int64_t b, int64_t t, int64_t past, int64_t e,
                    int64_t heads, float scale, float* out, ThreadPool& pool);

/// Queries [i0, i1) of row r and head h (size d) of attention_core on AVX-512 registers, for d of
/// 16, 32, 64 or 128 (attention_avx512.cpp; the CPU must have AVX-512F); false for other d.
bool attention_queries_avx512(const AttentionView& view, int64_t r, int64_t h, int64_t i0,
                              int64_t i1, int64_t t, int64_t past, int64_t e, int64_t d,
                              float scale, float* out);

/// Causal self-attention: qkv [b, s, 3e] (heads of size e/heads side by side), key_valid [b, s]
/// (null = all valid) -> out [b, s, e]. A query with no valid key gives zeros.
void causal_attention(const float* qkv, const uint8_t* key_valid, int64_t b, int64_t s, int64_t e,
                      int64_t heads, float scale, float* out, ThreadPool& pool);

/// One sequence of a KV-cache pass: its `count` new tokens are rows row..row+count-1 of qkv and
/// out, at positions past..past+count-1 of its slot's cache k/v [capacity, e].
struct CachedSequence {
  int64_t row = 0, count = 0, past = 0;
  float* k = nullptr;
  float* v = nullptr;
};

/// Attention of new tokens against their slots' KV caches, sequences of any lengths in one call:
/// appends each sequence's keys and values (from qkv [rows, 3e]) to its slot, then its queries
/// attend over positions 0..past+i of that slot -> out [rows, e].
void slot_attention(const float* qkv, const CachedSequence* seqs, int64_t n, int64_t e,
                    int64_t heads, float scale, float* out, ThreadPool& pool);

/// out[r, t] = wte[ids[r, t]] + wpe[pos[r, t]] (ids/pos already range-checked), rows = b * s.
void embedding_rows(const int64_t* ids, const int64_t* pos, const float* wte, const float* wpe,
                    int64_t rows, int64_t e, float* out, ThreadPool& pool);

/// The index of the first largest of x[0..n) (as std::max_element; 0 where n is 0), in vector
/// passes: the largest value, then its first position.
int64_t argmax(const float* x, int64_t n);

/// Vectorisable approximations (|relative error| about 2e-7) used by the kernels above.
float exp_approx(float x);
float gelu_tanh_approx(float x);
float gelu_erf_approx(float x);

}  // namespace gptrt::cpu
