//! Attention on the CPU, reading the KV cache where it lies, with llama.cpp's arithmetic (its
//! CPU backend without flash attention, with an f32 or an f16 cache): per query head,
//!
//! 1. scores `k_j · q` as ggml's `vec_dot_f32`/`vec_dot_f16` sums them (four 8-lane
//!    accumulators over steps of 32, then a fixed reduction), or for several queries over an
//!    f16 cache as `tinyBLAS` does; times the scale, `-inf` past the causal limit;
//! 2. softmax as `ggml_vec_soft_max_f32`: ggml's vector `expf` eight at a time, each eight's
//!    sum added in f64, then the probabilities times `(float)(1 / sum)`;
//! 3. the output `Σ p_j v_j` per dimension as the product `V · p` with `V` transposed: for one
//!    query (decode) by `vec_dot` again, for several (prefill) by llamafile's `tinyBLAS`
//!    (one 8-lane accumulator over the positions, then a horizontal sum).
//!
//! With an f16 cache, the query (step 1) and the probabilities (step 3) are rounded to f16
//! before they are multiplied, as llama.cpp converts the right-hand side of an f16 product.
//!
//! Rounding the same way matters because every layer's output is quantized to int8 before the
//! next product: a difference in the last bit can flip a rounding and grow from there. The
//! general path (batched matmuls, a softmax op) also costs a dozen small ops per layer.

use super::dot::{dot_gemm, hsum8, vec_dot};
#[cfg(target_arch = "x86_64")]
use super::dot::{dot_gemm8_avx2, vec_dot8_avx2};
use super::vexp::exp8;
use super::{simd, Elem};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Storage, Tensor};
use half::f16;

/// Work (multiply-adds) below which one thread does it all: splitting costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 17;

/// `x` as the product sees it: rounded through f16 when the other side is f16.
fn operand<T: Elem>(x: &[f32]) -> std::borrow::Cow<'_, [f32]> {
    if T::IS_F16 {
        let mut r = x.to_vec();
        simd::round_through_f16(&mut r);
        r.into()
    } else {
        x.into()
    }
}

/// A strided view of a 4-d CPU tensor.
struct View<'a, T> {
    data: &'a [T],
    offset: usize,
    stride: [usize; 4],
}

impl<'a, T> View<'a, T> {
    fn row(&self, i: usize, j: usize, k: usize, len: usize) -> &'a [T] {
        let start = self.offset + i * self.stride[0] + j * self.stride[1] + k * self.stride[2];
        &self.data[start..start + len]
    }
}

fn view<'a, T: Elem>(storage: &'a Storage, t: &Tensor, what: &str) -> Result<View<'a, T>> {
    let Some(data) = (match storage {
        Storage::Cpu(s) => T::of(s),
        _ => None,
    }) else {
        bail!(
            "attention: {what} must be {} on the CPU, not {:?}",
            if T::IS_F16 { "f16" } else { "f32" },
            t.dtype()
        );
    };
    let layout = t.layout();
    let stride: [usize; 4] = layout
        .stride()
        .try_into()
        .ok()
        .with_context(|| format!("attention: {what} must have 4 dimensions"))?;
    if stride[3] != 1 {
        bail!("attention: {what} rows must be contiguous");
    }
    Ok(View {
        data,
        offset: layout.start_offset(),
        stride,
    })
}

/// How a sum of products is rounded, as the routine llama.cpp picks for it.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Reduce {
    /// `vec_dot_f32` / `vec_dot_f16`: four 8-lane accumulators over steps of 32.
    VecDot,
    /// llamafile's `tinyBLAS`: one 8-lane accumulator, then a horizontal sum. llama.cpp uses it
    /// only for products over several queries whose right side is contiguous.
    Gemm,
}

/// `softmax(q·kᵀ · scale + causal mask) · v` for the `s` query positions that follow `pos`
/// cached ones, with grouped-query heads.
///
/// `q`: `(b, n_heads, s, head_dim)` f32; `k`, `v`: `(b, n_kv_heads, pos + s, head_dim)`, both
/// f32 or both f16, any strides with contiguous rows (views of the cache buffers). Query `i`
/// sees positions `0..=pos + i`. Returns `(b, s, n_heads * head_dim)` f32.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    attention_as(q, k, v, scale, false, None)
}

/// [`attention`] with each query computed exactly as a one-token decode step computes it
/// (`as_steps`), instead of llama.cpp's multi-query order: a verify pass over several
/// positions then gives, bit for bit, the logits of that many one-token steps.
///
/// With a sliding `window`, the query at position `p` sees only `p - window + 1 ..= p`: the
/// older scores are -inf, as in llama.cpp's masked softmax, so every sum keeps its order and
/// the hidden positions add exact zeros.
pub fn attention_as(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    as_steps: bool,
    window: Option<usize>,
) -> Result<Tensor> {
    let window = window.unwrap_or(usize::MAX);
    match (k.dtype(), v.dtype()) {
        (candle_core::DType::F16, candle_core::DType::F16) => {
            attention_of::<f16>(q, k, v, scale, as_steps, window)
        }
        _ => attention_of::<f32>(q, k, v, scale, as_steps, window),
    }
}

fn attention_of<T: Elem>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    as_steps: bool,
    window: usize,
) -> Result<Tensor> {
    let (b, nh, s, hd) = q.dims4()?;
    let (kb, nkv, len, khd) = k.dims4()?;
    if s == 0 || len < s || kb != b || khd != hd || v.dims4()? != (b, nkv, len, hd) || nh % nkv != 0
    {
        bail!(
            "attention: shapes q {:?}, k {:?}, v {:?} do not fit",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let pos = len - s;
    let q = q.contiguous()?;
    let (qs, ks, vs) = (
        q.storage_and_layout().0,
        k.storage_and_layout().0,
        v.storage_and_layout().0,
    );
    let qv = view::<f32>(&qs, &q, "q")?;
    let (kv, vv) = (view::<T>(&ks, k, "k")?, view::<T>(&vs, v, "v")?);
    let n_rep = nh / nkv;
    // Scores: with an f32 cache the queries are a strided view, so llama.cpp takes vec_dot
    // even for several of them; converted to f16 they become contiguous and go to tinyBLAS.
    let scores = if s > 1 && T::IS_F16 && hd.is_multiple_of(8) {
        Reduce::Gemm
    } else {
        Reduce::VecDot
    };
    if s == 1 {
        let out = decode(&qv, &kv, &vv, [b, nh, nkv, len, hd], scale, window);
        return Ok(Tensor::from_vec(out, (b, 1, nh * hd), &Device::Cpu)?);
    }
    if as_steps {
        // Query i as the step at position pos + i: the decode routine over the rows it sees.
        // Its output is (b, nh * hd) per step; the steps are stacked along the sequence.
        let mut steps = Vec::with_capacity(s);
        for i in 0..s {
            let qi = q.narrow(2, i, 1)?.contiguous()?;
            let qs = qi.storage_and_layout().0;
            let qiv = view::<f32>(&qs, &qi, "q")?;
            let out = decode(&qiv, &kv, &vv, [b, nh, nkv, pos + i + 1, hd], scale, window);
            steps.push(Tensor::from_vec(out, (b, 1, nh * hd), &Device::Cpu)?);
        }
        return Ok(Tensor::cat(&steps, 1)?);
    }
    let values = Reduce::Gemm;
    // Output (b, s, nh, hd): per chunk one query's heads of one KV group (contiguous there),
    // which read the same keys and values: each row is loaded once for all of them.
    let mut out = vec![0f32; b * s * nh * hd];
    let group = |(idx, y): (usize, &mut [f32])| {
        let (bi, i, g) = (idx / (s * nkv), idx / nkv % s, idx % nkv);
        let seen = pos + i + 1;
        let qs: Vec<_> = (0..n_rep)
            .map(|r| operand::<T>(qv.row(bi, g * n_rep + r, i, hd)))
            .collect();
        let qs: Vec<&[f32]> = qs.iter().map(|q| &q[..]).collect();
        let first = seen.saturating_sub(window);
        let mut probs = softmax_scores(&qs, |j| kv.row(bi, g, j, hd), first..seen, scale, scores);
        if T::IS_F16 {
            probs.iter_mut().for_each(|p| simd::round_through_f16(p));
        }
        weighted_sum(&probs, |j| vv.row(bi, g, j, hd), values, y);
    };
    let work = b * nh * s * (pos + s) * hd * 2;
    if work >= PARALLEL_MIN_WORK {
        crate::kernels::pool::for_each_chunk_mut(&mut out, n_rep * hd, &|i, y| group((i, y)));
    } else {
        out.chunks_mut(n_rep * hd).enumerate().for_each(group);
    }
    Ok(Tensor::from_vec(out, (b, s, nh * hd), &Device::Cpu)?)
}

/// Positions scored per task in [`decode`].
const SCORE_BLOCK: usize = 64;

/// Asks the CPU to start loading every cache line of `row`, into L1, or into L2 only when
/// `L2` (for more data than L1 holds). A hint: never faults, no effect on results.
#[inline(always)]
fn prefetch<const L2: bool, T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        let p = row.as_ptr() as *const i8;
        for off in (0..std::mem::size_of_val(row)).step_by(64) {
            // SAFETY: a prefetch hint reads nothing architecturally; `off` stays in `row`.
            unsafe {
                if L2 {
                    _mm_prefetch::<_MM_HINT_T1>(p.add(off))
                } else {
                    _mm_prefetch::<_MM_HINT_T0>(p.add(off))
                }
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Runs `f` on each `size`-long chunk of `data` with its index, on the thread pool when `work`
/// is worth splitting.
fn for_each_chunk<F>(data: &mut [f32], size: usize, work: usize, f: F)
where
    F: Fn((usize, &mut [f32])) + Send + Sync,
{
    if work >= PARALLEL_MIN_WORK {
        crate::kernels::pool::for_each_chunk_mut(data, size, &|i, c| f((i, c)));
    } else {
        data.chunks_mut(size).enumerate().for_each(f);
    }
}

/// One query per sequence (a decode step), `dims = [b, nh, nkv, len, hd]`: the same sums as
/// the per-head path, organised so that each cached row is read once for all the query heads
/// that share it, and so that two threads get even shares even with 9 heads.
///
/// 1. Scores in blocks of positions, each key row dotted with its group's queries.
/// 2. Softmax per head.
/// 3. The weighted sum in quarters: `vec_dot`'s four accumulators are independent until the
///    final reduction, so accumulator `r` (positions `j` with `(j / 8) % 4 == r`) is one task
///    per KV group, reading a quarter of the value rows once for all its query heads.
/// 4. Each head's 32 lanes folded in `vec_dot`'s order.
fn decode<T: Elem>(
    qv: &View<f32>,
    kv: &View<T>,
    vv: &View<T>,
    [b, nh, nkv, len, hd]: [usize; 5],
    scale: f32,
    window: usize,
) -> Vec<f32> {
    let n_rep = nh / nkv;
    let work = b * nh * len * hd * 2;
    let queries: Vec<Vec<f32>> = (0..b * nh)
        .map(|i| operand::<T>(qv.row(i / nh, i % nh, 0, hd)).into_owned())
        .collect();
    // 1. scores[(bi, g)][block][r][j], padded to whole blocks.
    let blocks = len.div_ceil(SCORE_BLOCK);
    let plen = blocks * SCORE_BLOCK;
    let mut scores = vec![f32::NEG_INFINITY; b * nkv * plen * n_rep];
    for_each_chunk(&mut scores, SCORE_BLOCK * n_rep, work, |(idx, chunk)| {
        let (bg, blk) = (idx / blocks, idx % blocks);
        let (bi, g) = (bg / nkv, bg % nkv);
        let start = blk * SCORE_BLOCK;
        let end = len.min(start + SCORE_BLOCK);
        let mut j = start;
        #[cfg(target_arch = "x86_64")]
        if hd.is_multiple_of(32) && crate::kernels::simd::avx2_fma_f16c() {
            // The rows of a long cache come from memory, read in order as the weights are.
            let ahead =
                crate::kernels::simd::PREFETCH_BYTES / (hd * std::mem::size_of::<T>()).max(1);
            while j + 8 <= end {
                if j + ahead + 8 <= len {
                    for i in 0..8 {
                        prefetch::<false, T>(kv.row(bi, g, j + ahead + i, hd));
                    }
                }
                let k: [&[T]; 8] = std::array::from_fn(|i| kv.row(bi, g, j + i, hd));
                for r in 0..n_rep {
                    let q = &queries[bi * nh + g * n_rep + r];
                    let out = &mut chunk[r * SCORE_BLOCK + j - start..][..8];
                    // SAFETY: the CPU has the features (checked above); every row holds `hd`
                    // values, a multiple of 32, and `out` eight.
                    unsafe { vec_dot8_avx2(k, q, scale, out) };
                }
                j += 8;
            }
        }
        for j in j..end {
            let k = kv.row(bi, g, j, hd);
            for r in 0..n_rep {
                chunk[r * SCORE_BLOCK + j - start] =
                    vec_dot(k, &queries[bi * nh + g * n_rep + r]) * scale;
            }
        }
    });
    // Positions before the sliding window: -inf, as llama.cpp's mask writes them.
    let first = len.saturating_sub(window);
    if first > 0 {
        for (idx, chunk) in scores.chunks_mut(SCORE_BLOCK * n_rep).enumerate() {
            let start = idx % blocks * SCORE_BLOCK;
            for r in 0..n_rep {
                for (j, x) in chunk[r * SCORE_BLOCK..(r + 1) * SCORE_BLOCK]
                    .iter_mut()
                    .enumerate()
                {
                    if start + j < first {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
    // 2. probs[(bi, h)][j], zero past `len`.
    let mut probs = vec![0f32; b * nh * plen];
    for_each_chunk(&mut probs, plen, work, |(idx, row)| {
        let (bi, h) = (idx / nh, idx % nh);
        let (g, r) = (h / n_rep, h % n_rep);
        let head = |blk: usize| {
            let at = ((bi * nkv + g) * blocks + blk) * SCORE_BLOCK * n_rep + r * SCORE_BLOCK;
            &scores[at..at + SCORE_BLOCK]
        };
        let max = (0..blocks)
            .flat_map(|blk| head(blk).iter())
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        let mut sum = 0f64;
        let eights = (0..blocks).flat_map(|blk| head(blk).chunks_exact(8));
        for (w, out) in eights.zip(row.chunks_exact_mut(8)).take(len.div_ceil(8)) {
            let e = exp8(std::array::from_fn(|l| w[l] - max));
            out.copy_from_slice(&e);
            sum += hsum8(&e) as f64;
        }
        let inv = (1.0 / sum) as f32;
        for p in &mut row[..len] {
            *p *= inv;
        }
        if T::IS_F16 {
            simd::round_through_f16(&mut row[..len]);
        }
    });
    // 3. lanes[(bi, g)][quarter][r][lane][d].
    let task = n_rep * 8 * hd;
    let mut lanes = vec![0f32; b * nkv * 4 * task];
    for_each_chunk(&mut lanes, task, work, |(idx, acc)| {
        let (bg, quarter) = (idx / 4, idx % 4);
        let (bi, g) = (bg / nkv, bg % nkv);
        let p: Vec<&[f32]> = (0..n_rep)
            .map(|r| &probs[(bi * nh + g * n_rep + r) * plen..][..len])
            .collect();
        quarter_sums(acc, &p, |j| vv.row(bi, g, j, hd), quarter, hd);
    });
    // 4. out[(bi, h)][d].
    let mut out = vec![0f32; b * nh * hd];
    let mut acc = vec![0f32; 32 * hd];
    for (idx, y) in out.chunks_exact_mut(hd).enumerate() {
        let (bi, h) = (idx / nh, idx % nh);
        let (g, r) = (h / n_rep, h % n_rep);
        for quarter in 0..4 {
            let at = ((bi * nkv + g) * 4 + quarter) * task + r * 8 * hd;
            acc[quarter * 8 * hd..(quarter + 1) * 8 * hd].copy_from_slice(&lanes[at..at + 8 * hd]);
        }
        fold_lanes(&mut acc, hd, Reduce::VecDot);
        y.copy_from_slice(&acc[..hd]);
    }
    out
}

/// Step 3 of [`decode`] for one KV group and one of `vec_dot`'s four accumulators:
/// `acc[r][l][d] = Σ p[r][j] · v_j[d]` over the positions `j ≡ 8·quarter + l (mod 32)`, in
/// increasing order, for the group's query heads `r`.
fn quarter_sums<'a, T: Elem>(
    acc: &mut [f32],
    p: &[&[f32]],
    value: impl Fn(usize) -> &'a [T],
    quarter: usize,
    hd: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if hd.is_multiple_of(32) && crate::kernels::simd::avx2_fma_f16c() {
            for (i, reps) in p.chunks(3).enumerate() {
                let acc = &mut acc[i * 3 * 8 * hd..];
                // SAFETY: the CPU has the features (checked just above); `hd` is a multiple
                // of 32 and every row `value` returns holds `hd` values.
                unsafe {
                    match reps {
                        [a] => quarter_sums_avx2(acc, [*a], &value, quarter, hd),
                        [a, b] => quarter_sums_avx2(acc, [*a, *b], &value, quarter, hd),
                        [a, b, c] => quarter_sums_avx2(acc, [*a, *b, *c], &value, quarter, hd),
                        _ => unreachable!("chunks of at most 3"),
                    }
                }
            }
            return;
        }
    }
    let len = p.first().map_or(0, |p| p.len());
    for l in 0..8 {
        for j in (quarter * 8 + l..len).step_by(32) {
            let v = value(j);
            for (r, pr) in p.iter().enumerate() {
                axpy(&mut acc[(r * 8 + l) * hd..(r * 8 + l + 1) * hd], v, pr[j]);
            }
        }
    }
}

/// [`quarter_sums`] for `R` heads with the sums in registers: 32 dimensions of `R` heads at a
/// time, each value row read once for all of them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn quarter_sums_avx2<'a, T: Elem, const R: usize>(
    acc: &mut [f32],
    p: [&[f32]; R],
    value: &impl Fn(usize) -> &'a [T],
    quarter: usize,
    hd: usize,
) {
    use std::arch::x86_64::*;
    let len = p[0].len();
    // The loops below read one cache line per 4 KiB (rows 32 apart), which no hardware
    // prefetcher follows: ask for all of this quarter's rows first (into L2; a quarter of a
    // 2,048-position f16 cache is 64 KiB), so that the reads overlap.
    for j in (quarter * 8..len).step_by(32) {
        for l in j..len.min(j + 8) {
            prefetch::<true, T>(value(l));
        }
    }
    for l in 0..8 {
        for dc in (0..hd).step_by(32) {
            let mut a = [[_mm256_setzero_ps(); 4]; R];
            for j in (quarter * 8 + l..len).step_by(32) {
                let row = &value(j)[dc..dc + 32];
                // SAFETY: `row` holds 32 values.
                let x: [__m256; 4] =
                    std::array::from_fn(|c| unsafe { T::load8(row.as_ptr().add(c * 8)) });
                for r in 0..R {
                    let pr = _mm256_set1_ps(p[r][j]);
                    for c in 0..4 {
                        a[r][c] = _mm256_fmadd_ps(x[c], pr, a[r][c]);
                    }
                }
            }
            for (r, ar) in a.iter().enumerate() {
                let out = &mut acc[(r * 8 + l) * hd + dc..(r * 8 + l) * hd + dc + 32];
                for (c, v) in ar.iter().enumerate() {
                    // SAFETY: `out` holds 32 f32s.
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(c * 8), *v) };
                }
            }
        }
    }
}

/// Steps 1 and 2 for the query heads `qs` of one KV group: each head's probabilities of
/// positions `0..seen`. Eight keys at a time, each read once for all the heads; every head's
/// sums are exactly those it would have alone.
fn softmax_scores<'a, T: Elem>(
    qs: &[&[f32]],
    key: impl Fn(usize) -> &'a [T],
    visible: std::ops::Range<usize>,
    scale: f32,
    reduce: Reduce,
) -> Vec<Vec<f32>> {
    let seen = visible.end;
    // Padded to whole eights with -inf, whose exp is exactly 0, as the masked tail of
    // llama.cpp's (256-padded) row; positions before the window are -inf too.
    let mut ws = vec![vec![f32::NEG_INFINITY; seen.div_ceil(8) * 8]; qs.len()];
    let mut j0 = visible.start;
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::avx2_fma_f16c()
        && qs.iter().all(|q| match reduce {
            Reduce::VecDot => q.len().is_multiple_of(32),
            Reduce::Gemm => q.len().is_multiple_of(8),
        })
    {
        // The q loads shared by eight keys, the keys by the heads.
        while j0 + 8 <= seen {
            let k: [&[T]; 8] = std::array::from_fn(|i| key(j0 + i));
            for (q, w) in qs.iter().zip(ws.iter_mut()) {
                let out = &mut w[j0..j0 + 8];
                // SAFETY: the CPU has the features and the lengths fit (both checked above).
                unsafe {
                    match reduce {
                        Reduce::VecDot => vec_dot8_avx2(k, q, scale, out),
                        Reduce::Gemm => dot_gemm8_avx2(k, q, scale, out),
                    }
                }
            }
            j0 += 8;
        }
    }
    for (q, w) in qs.iter().zip(ws.iter_mut()) {
        for (j, x) in w.iter_mut().enumerate().take(seen).skip(j0) {
            let dot = match reduce {
                Reduce::VecDot => vec_dot(key(j), q),
                Reduce::Gemm => dot_gemm(key(j), q),
            };
            *x = dot * scale;
        }
        let max = w.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0f64;
        for c in w.chunks_exact_mut(8) {
            let e = exp8(std::array::from_fn(|l| c[l] - max));
            c.copy_from_slice(&e);
            sum += hsum8(&e) as f64;
        }
        let inv = (1.0 / sum) as f32;
        w.truncate(seen);
        w.iter_mut().for_each(|p| *p *= inv);
    }
    ws
}

/// Step 3 for the query heads of one KV group: `y[r·hd + d] = Σ_j p[r][j] v_j[d]`, rounded as
/// `reduce` says (`y` holds `p.len()` heads). The accumulators are laid out lane-major
/// (`acc[head][lane][d]`) so each position is one contiguous multiply-add over `d`, and each
/// reduction step one contiguous add.
fn weighted_sum<'a, T: Elem>(
    p: &[Vec<f32>],
    value: impl Fn(usize) -> &'a [T],
    reduce: Reduce,
    y: &mut [f32],
) {
    let heads = p.len();
    let hd = y.len() / heads;
    // Lane l holds the positions j ≡ l (mod lanes), in order: tinyBLAS's one 8-lane
    // accumulator, or vec_dot's four (accumulator (j / 8) % 4, lane j % 8).
    let lanes = match reduce {
        Reduce::Gemm => 8,
        Reduce::VecDot => 32,
    };
    let per_head = lanes * hd;
    let mut acc = vec![0f32; heads * per_head];
    #[cfg(target_arch = "x86_64")]
    let in_registers = hd.is_multiple_of(32) && crate::kernels::simd::avx2_fma_f16c();
    #[cfg(not(target_arch = "x86_64"))]
    let in_registers = false;
    if in_registers {
        #[cfg(target_arch = "x86_64")]
        for (c, reps) in p.chunks(3).enumerate() {
            let acc = &mut acc[c * 3 * per_head..];
            // SAFETY: the CPU has the features and `hd` is a multiple of 32 (checked above).
            unsafe {
                match reps {
                    [a] => lane_sums_avx2(acc, [a], &value, lanes, hd),
                    [a, b] => lane_sums_avx2(acc, [a, b], &value, lanes, hd),
                    [a, b, c] => lane_sums_avx2(acc, [a, b, c], &value, lanes, hd),
                    _ => unreachable!("chunks of at most 3"),
                }
            }
        }
    } else {
        for (pr, acc) in p.iter().zip(acc.chunks_exact_mut(per_head)) {
            for (j, &pj) in pr.iter().enumerate() {
                let lane = &mut acc[(j % lanes) * hd..(j % lanes + 1) * hd];
                axpy(lane, value(j), pj);
            }
        }
    }
    for (acc, y) in acc.chunks_exact_mut(per_head).zip(y.chunks_exact_mut(hd)) {
        fold_lanes(acc, hd, reduce);
        y.copy_from_slice(&acc[..hd]);
    }
}

/// The accumulation of [`weighted_sum`] for `R` heads with the sums in registers: for each
/// lane and each 32 dimensions, the lane's positions (`j ≡ lane (mod lanes)`, in order)
/// multiplied and added in four vectors per head, each value row read once for all heads,
/// then stored once; the same fused multiply-adds as [`axpy`] per position. `hd` is a
/// multiple of 32, every row `value` returns holds `hd` values, and all `p` have one length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // `a[r][c]`: two indices, one loop each
fn lane_sums_avx2<'a, T: Elem, const R: usize>(
    acc: &mut [f32],
    p: [&Vec<f32>; R],
    value: &impl Fn(usize) -> &'a [T],
    lanes: usize,
    hd: usize,
) {
    use std::arch::x86_64::*;
    let len = p[0].len();
    assert!(p.iter().all(|p| p.len() == len) && acc.len() >= R * lanes * hd);
    for l in 0..lanes {
        for dc in (0..hd).step_by(32) {
            let mut a = [[_mm256_setzero_ps(); 4]; R];
            for j in (l..len).step_by(lanes) {
                let row = &value(j)[dc..dc + 32];
                let pj: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(p[r][j]));
                for c in 0..4 {
                    // SAFETY: `row` holds 32 values.
                    let x = unsafe { T::load8(row.as_ptr().add(c * 8)) };
                    for r in 0..R {
                        a[r][c] = _mm256_fmadd_ps(x, pj[r], a[r][c]);
                    }
                }
            }
            for (r, ar) in a.iter().enumerate() {
                let at = r * lanes * hd + l * hd + dc;
                let out = &mut acc[at..at + 32];
                for (c, v) in ar.iter().enumerate() {
                    // SAFETY: `out` holds 32 f32s.
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(c * 8), *v) };
                }
            }
        }
    }
}

/// Sums the lanes of `acc` (`hd` values each: 8 for tinyBLAS, 32 for `vec_dot`) in the
/// reference's order, for every d at once, into lane 0.
fn fold_lanes(acc: &mut [f32], hd: usize, reduce: Reduce) {
    let mut fold = |dst: usize, src: usize| fold_lane(acc, hd, dst, src);
    match reduce {
        Reduce::Gemm => {
            // hsum8: halves, then lanes 0+2 and 1+3, then those two.
            (0..4).for_each(|l| fold(l, l + 4));
            fold(0, 2);
            fold(1, 3);
            fold(0, 1);
        }
        Reduce::VecDot => {
            // GGML_F32x8_REDUCE: accumulators 0+2 and 1+3, then those two; then the halves;
            // then pairs 0+1 and 2+3, then those two.
            for l in 0..8 {
                fold(l, 16 + l);
                fold(8 + l, 24 + l);
                fold(l, 8 + l);
            }
            (0..4).for_each(|l| fold(l, l + 4));
            fold(0, 1);
            fold(2, 3);
            fold(0, 2);
        }
    }
}

/// `acc[d] = fma(x[d], a, acc[d])`.
fn axpy<T: Elem>(acc: &mut [f32], x: &[T], a: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if acc.len().is_multiple_of(8)
            && x.len() >= acc.len()
            && crate::kernels::simd::avx2_fma_f16c()
        {
            // SAFETY: the CPU has the features (checked just above); lengths checked too.
            return unsafe { axpy_avx2(acc, x, a) };
        }
    }
    for (s, &v) in acc.iter_mut().zip(x) {
        *s = v.to_f32().mul_add(a, *s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn axpy_avx2<T: Elem>(acc: &mut [f32], x: &[T], a: f32) {
    use std::arch::x86_64::*;
    let av = _mm256_set1_ps(a);
    for (i, s) in acc.chunks_exact_mut(8).enumerate() {
        // SAFETY: `x` holds at least `acc.len()` values and `s` eight.
        unsafe {
            let xv = T::load8(x.as_ptr().add(i * 8));
            let sv = _mm256_loadu_ps(s.as_ptr());
            _mm256_storeu_ps(s.as_mut_ptr(), _mm256_fmadd_ps(xv, av, sv));
        }
    }
}

/// Adds lane `src` of `acc` (`hd` values each) into lane `dst`, `dst < src`.
fn fold_lane(acc: &mut [f32], hd: usize, dst: usize, src: usize) {
    let (lo, hi) = acc.split_at_mut(src * hd);
    for (a, b) in lo[dst * hd..(dst + 1) * hd].iter_mut().zip(&hi[..hd]) {
        *a += *b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernels::test_values as values;

    /// `(b, nkv, len, hd)` with each KV head repeated for its `nh / nkv` query heads.
    fn repeat_kv(t: &Tensor, nh: usize) -> Tensor {
        let (b, nkv, len, hd) = t.dims4().unwrap();
        t.unsqueeze(2)
            .unwrap()
            .repeat((1, 1, nh / nkv, 1, 1))
            .unwrap()
            .reshape((b, nh, len, hd))
            .unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Against the general path: matmul, softmax, matmul with the KV heads repeated; on strided
    /// views of a larger buffer, as the cache hands them out.
    #[test]
    fn matches_matmul_softmax_matmul() {
        let dev = Device::Cpu;
        let (b, nh, nkv, len, cap, hd) = (3, 6, 2, 37, 50, 40);
        let q = Tensor::from_vec(values(b * nh * hd, 1), (b, nh, 1, hd), &dev).unwrap();
        let kbuf =
            Tensor::from_vec(values(b * nkv * cap * hd, 2), (b, nkv, cap, hd), &dev).unwrap();
        let vbuf =
            Tensor::from_vec(values(b * nkv * cap * hd, 3), (b, nkv, cap, hd), &dev).unwrap();
        let (k, v) = (
            kbuf.narrow(2, 0, len).unwrap(),
            vbuf.narrow(2, 0, len).unwrap(),
        );
        let scale = 1.0 / (hd as f32).sqrt();
        let got = attention(&q, &k, &v, scale).unwrap();
        let (kr, vr) = (repeat_kv(&k, nh), repeat_kv(&v, nh));
        let scores = (q.matmul(&kr.t().unwrap()).unwrap() * scale as f64).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let want = probs.matmul(&vr).unwrap().reshape((b, 1, nh * hd)).unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-5, "max difference {diff}");
    }

    /// The general path with the causal mask: matmul, masked softmax, matmul, with the KV
    /// heads repeated. Returns `(b, s, nh * hd)`.
    fn general_path(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Tensor {
        let (b, nh, s, hd) = q.dims4().unwrap();
        let len = k.dim(2).unwrap();
        let pos = len - s;
        let mask: Vec<f32> = (0..s)
            .flat_map(|i| (0..len).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (s, len), q.device()).unwrap();
        let scores = (q.matmul(&repeat_kv(k, nh).t().unwrap()).unwrap() * scale as f64)
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs
            .matmul(&repeat_kv(v, nh))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, s, nh * hd))
            .unwrap()
    }

    /// An f16 cache, for one query (decode) and several (prefill, tinyBLAS scores): the general
    /// path on the values the products see (keys and values in f16, the query rounded to f16)
    /// agrees up to the f16 rounding of the probabilities; the f32 cache would not.
    #[test]
    fn f16_cache_matches_general_path_on_rounded_values() {
        let dev = Device::Cpu;
        let (b, nh, nkv, len, hd) = (2, 6, 2, 45, 32);
        let half = |t: &Tensor| t.to_dtype(candle_core::DType::F16).unwrap();
        let full = |t: &Tensor| t.to_dtype(candle_core::DType::F32).unwrap();
        for s in [1, 5] {
            let q = Tensor::from_vec(values(b * nh * s * hd, 9), (b, nh, s, hd), &dev).unwrap();
            let k =
                Tensor::from_vec(values(b * nkv * len * hd, 10), (b, nkv, len, hd), &dev).unwrap();
            let v =
                Tensor::from_vec(values(b * nkv * len * hd, 11), (b, nkv, len, hd), &dev).unwrap();
            let scale = 1.0 / (hd as f32).sqrt();
            let got = attention(&q, &half(&k), &half(&v), scale).unwrap();
            let want = general_path(&full(&half(&q)), &full(&half(&k)), &full(&half(&v)), scale);
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 2e-3, "s = {s}: max difference {diff}");
            let unrounded = general_path(&q, &k, &v, scale);
            assert!(
                max_abs_diff(&got, &unrounded) > 0.0,
                "s = {s}: nothing was rounded"
            );
        }
    }

    /// The grouped decode path gives the per-head computation's bits exactly (scores by
    /// `vec_dot`, softmax, weighted sum by `vec_dot`'s four accumulators), for both caches, at
    /// lengths around the block and accumulator boundaries, for a batch of two.
    #[test]
    fn decode_equals_per_head_sums_bit_for_bit() {
        let dev = Device::Cpu;
        let (b, nh, nkv, hd) = (2, 6, 2, 64);
        for dtype in [candle_core::DType::F32, candle_core::DType::F16] {
            for len in [1, 7, 33, 64, 100, 300] {
                let q = Tensor::from_vec(values(b * nh * hd, 12), (b, nh, 1, hd), &dev).unwrap();
                let kv = |seed| {
                    Tensor::from_vec(values(b * nkv * len * hd, seed), (b, nkv, len, hd), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap()
                };
                let (k, v) = (kv(13), kv(14));
                let scale = 0.125;
                let got = attention(&q, &k, &v, scale)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let want = per_head(&q, &k, &v, scale);
                assert_eq!(got, want, "{dtype:?}, len {len}");
            }
        }
    }

    /// One head at a time: [`softmax_scores`] and [`weighted_sum`] with `vec_dot`'s order.
    fn per_head(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Vec<f32> {
        fn run<T: Elem>(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Vec<f32> {
            let (b, nh, _, hd) = q.dims4().unwrap();
            let (nkv, len) = (k.dim(1).unwrap(), k.dim(2).unwrap());
            let (qs, ks, vs) = (
                q.storage_and_layout().0,
                k.storage_and_layout().0,
                v.storage_and_layout().0,
            );
            let qv = view::<f32>(&qs, q, "q").unwrap();
            let (kv, vv) = (
                view::<T>(&ks, k, "k").unwrap(),
                view::<T>(&vs, v, "v").unwrap(),
            );
            let mut out = vec![0f32; b * nh * hd];
            for (idx, y) in out.chunks_mut(hd).enumerate() {
                let (bi, h) = (idx / nh, idx % nh);
                let g = h / (nh / nkv);
                let q = operand::<T>(qv.row(bi, h, 0, hd));
                let mut p = softmax_scores(
                    &[&q],
                    |j| kv.row(bi, g, j, hd),
                    0..len,
                    scale,
                    Reduce::VecDot,
                );
                if T::IS_F16 {
                    simd::round_through_f16(&mut p[0]);
                }
                weighted_sum(&p, |j| vv.row(bi, g, j, hd), Reduce::VecDot, y);
            }
            out
        }
        match k.dtype() {
            candle_core::DType::F16 => run::<f16>(q, k, v, scale),
            _ => run::<f32>(q, k, v, scale),
        }
    }

    /// Several queries (prefill): each sees the cached positions and the new ones up to its
    /// own, as the general path with a causal mask computes, and nothing after.
    #[test]
    fn prefill_is_causal_and_matches_masked_softmax() {
        let dev = Device::Cpu;
        let (b, nh, nkv, s, pos, hd) = (2, 4, 2, 5, 9, 32);
        let len = pos + s;
        let q = Tensor::from_vec(values(b * nh * s * hd, 4), (b, nh, s, hd), &dev).unwrap();
        let k = Tensor::from_vec(values(b * nkv * len * hd, 5), (b, nkv, len, hd), &dev).unwrap();
        let v = Tensor::from_vec(values(b * nkv * len * hd, 6), (b, nkv, len, hd), &dev).unwrap();
        let scale = 1.0 / (hd as f32).sqrt();
        let got = attention(&q, &k, &v, scale).unwrap(); // (b, s, nh * hd)
        let want = general_path(&q, &k, &v, scale);
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-5, "max difference {diff}");
        // Changing the last position's key and value leaves every earlier query as it was.
        let bump = |t: &Tensor| {
            let last = (t.narrow(2, len - 1, 1).unwrap() + 3.0).unwrap();
            Tensor::cat(&[t.narrow(2, 0, len - 1).unwrap(), last], 2).unwrap()
        };
        let moved = attention(&q, &bump(&k), &bump(&v), scale).unwrap();
        let early = |t: &Tensor| {
            t.narrow(1, 0, s - 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(early(&got), early(&moved));
        assert_ne!(
            got.narrow(1, s - 1, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            moved
                .narrow(1, s - 1, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        );
    }

    /// A sliding window of `w` equals plain attention over each query's last `w` keys, in
    /// decode, prefill and step-by-step verify alike; a window wider than the context changes
    /// nothing, bit for bit.
    #[test]
    fn sliding_window_sees_only_the_last_positions() {
        let dev = Device::Cpu;
        let (nh, nkv, s, pos, hd, w) = (4, 2, 6, 30, 32, 7);
        let len = pos + s;
        let q = Tensor::from_vec(values(nh * s * hd, 7), (1, nh, s, hd), &dev).unwrap();
        let k = Tensor::from_vec(values(nkv * len * hd, 8), (1, nkv, len, hd), &dev).unwrap();
        let v = Tensor::from_vec(values(nkv * len * hd, 9), (1, nkv, len, hd), &dev).unwrap();
        let scale = 1.0 / (hd as f32).sqrt();
        for as_steps in [false, true] {
            let got = attention_as(&q, &k, &v, scale, as_steps, Some(w)).unwrap();
            for i in 0..s {
                let end = pos + i + 1;
                let qi = q.narrow(2, i, 1).unwrap();
                let (ki, vi) = (
                    k.narrow(2, end - w, w).unwrap(),
                    v.narrow(2, end - w, w).unwrap(),
                );
                let want = attention(&qi, &ki, &vi, scale).unwrap();
                let diff = max_abs_diff(&got.narrow(1, i, 1).unwrap(), &want);
                assert!(diff < 1e-6, "query {i}, as_steps {as_steps}: {diff}");
            }
            let wide = attention_as(&q, &k, &v, scale, as_steps, Some(len)).unwrap();
            let plain = attention_as(&q, &k, &v, scale, as_steps, None).unwrap();
            assert_eq!(max_abs_diff(&wide, &plain), 0.0);
        }
    }
}
