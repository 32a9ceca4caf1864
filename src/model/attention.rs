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

use crate::vexp::exp8;
use anyhow::{bail, Context, Result};
use candle_core::{CpuStorage, Device, Storage, Tensor};
use half::f16;
use rayon::prelude::*;

/// Work (multiply-adds) below which one thread does it all: splitting costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 17;

/// What the KV cache may hold: f32, or f16 as llama.cpp's default cache does. With an f16
/// cache llama.cpp rounds the other operand of each product to f16 as well (the queries for the
/// scores, the probabilities for the weighted sum) and multiplies in f32.
pub(crate) trait KvElem: Copy + Send + Sync + 'static {
    /// True for f16: the other operand is rounded to f16 first.
    const HALF: bool;
    fn to_f32(self) -> f32;
    /// The values of a tensor's storage, if it holds this type.
    fn of(storage: &CpuStorage) -> Option<&[Self]>;
    /// Eight values from `p` as f32 lanes.
    ///
    /// # Safety
    /// `p..p + 8` must be readable and the CPU must have AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl KvElem for f32 {
    const HALF: bool = false;
    fn to_f32(self) -> f32 {
        self
    }
    fn of(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F32(d) => Some(d),
            _ => None,
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller guarantees eight readable values.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl KvElem for f16 {
    const HALF: bool = true;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn of(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F16(d) => Some(d),
            _ => None,
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees eight readable values and F16C.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
}

/// `x` as the product sees it: rounded through f16 when the other side is f16.
fn operand<T: KvElem>(x: &[f32]) -> std::borrow::Cow<'_, [f32]> {
    if T::HALF {
        x.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
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

fn view<'a, T: KvElem>(storage: &'a Storage, t: &Tensor, what: &str) -> Result<View<'a, T>> {
    let Some(data) = (match storage {
        Storage::Cpu(s) => T::of(s),
        _ => None,
    }) else {
        bail!(
            "attention: {what} must be {} on the CPU, not {:?}",
            if T::HALF { "f16" } else { "f32" },
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
    match (k.dtype(), v.dtype()) {
        (candle_core::DType::F16, candle_core::DType::F16) => attention_of::<f16>(q, k, v, scale),
        _ => attention_of::<f32>(q, k, v, scale),
    }
}

fn attention_of<T: KvElem>(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
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
    let scores = if s > 1 && T::HALF && hd % 8 == 0 {
        Reduce::Gemm
    } else {
        Reduce::VecDot
    };
    let values = if s == 1 { Reduce::VecDot } else { Reduce::Gemm };
    // Output (b, s, nh, hd): one head of one query per chunk.
    let mut out = vec![0f32; b * s * nh * hd];
    let head = |(idx, y): (usize, &mut [f32])| {
        let (bi, i, h) = (idx / (s * nh), idx / nh % s, idx % nh);
        let g = h / n_rep;
        let seen = pos + i + 1;
        let q = operand::<T>(qv.row(bi, h, i, hd));
        let mut probs = softmax_scores(&q, |j| kv.row(bi, g, j, hd), seen, scale, scores);
        if T::HALF {
            probs.iter_mut().for_each(|p| *p = f16::from_f32(*p).to_f32());
        }
        weighted_sum(&probs, |j| vv.row(bi, g, j, hd), values, y);
    };
    let work = b * nh * s * (pos + s) * hd * 2;
    if work >= PARALLEL_MIN_WORK {
        out.par_chunks_mut(hd).enumerate().for_each(head);
    } else {
        out.chunks_mut(hd).enumerate().for_each(head);
    }
    Ok(Tensor::from_vec(out, (b, s, nh * hd), &Device::Cpu)?)
}

/// Steps 1 and 2: the probabilities of positions `0..seen`.
fn softmax_scores<'a, T: KvElem>(
    q: &[f32],
    key: impl Fn(usize) -> &'a [T],
    seen: usize,
    scale: f32,
    reduce: Reduce,
) -> Vec<f32> {
    // Padded to whole eights with -inf, whose exp is exactly 0, as the masked tail of
    // llama.cpp's (256-padded) row.
    let mut w = vec![f32::NEG_INFINITY; seen.div_ceil(8) * 8];
    for (j, x) in w.iter_mut().take(seen).enumerate() {
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
    w
}

/// Step 3 for one query head: `y[d] = Σ_j p_j v_j[d]`, rounded as `reduce` says. The
/// accumulators are laid out lane-major (`acc[lane][d]`) so each position is one contiguous
/// multiply-add over `d`, and each reduction step one contiguous add.
fn weighted_sum<'a, T: KvElem>(
    p: &[f32],
    value: impl Fn(usize) -> &'a [T],
    reduce: Reduce,
    y: &mut [f32],
) {
    let hd = y.len();
    // Lane l holds the positions j ≡ l (mod lanes), in order: tinyBLAS's one 8-lane
    // accumulator, or vec_dot's four (accumulator (j / 8) % 4, lane j % 8).
    let lanes = match reduce {
        Reduce::Gemm => 8,
        Reduce::VecDot => 32,
    };
    let mut acc = vec![0f32; lanes * hd];
    for (j, &pj) in p.iter().enumerate() {
        let lane = &mut acc[(j % lanes) * hd..(j % lanes + 1) * hd];
        axpy(lane, value(j), pj);
    }
    // The lanes are then summed in the reference's order, for every d at once.
    let mut fold = |dst: usize, src: usize| fold_lane(&mut acc, hd, dst, src);
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
    y.copy_from_slice(&acc[..hd]);
}

/// `acc[d] = fma(x[d], a, acc[d])`.
fn axpy<T: KvElem>(acc: &mut [f32], x: &[T], a: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if acc.len() % 8 == 0 && x.len() >= acc.len() && crate::simd::avx2_fma_f16c() {
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
fn axpy_avx2<T: KvElem>(acc: &mut [f32], x: &[T], a: f32) {
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

/// ggml's `vec_dot_f32` / `vec_dot_f16` on AVX2: four 8-lane fused multiply-add accumulators
/// over steps of 32, reduced by [`reduce4x8`], and any leftover past the last whole step added
/// one by one (in f64 for f16, as `vec_dot_f16` does).
fn vec_dot<T: KvElem>(x: &[T], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::avx2_fma_f16c() {
            // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above).
            return unsafe { vec_dot_avx2(x, y) };
        }
    }
    vec_dot_portable(x, y)
}

/// [`vec_dot`] with the intrinsics ggml's own build uses.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn vec_dot_avx2<T: KvElem>(x: &[T], y: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let whole = n / 32 * 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    for (xs, ys) in x[..whole].chunks_exact(32).zip(y[..whole].chunks_exact(32)) {
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: each chunk holds 32 values, so lanes r*8..r*8+8 are in bounds.
            unsafe {
                let xv = T::load8(xs.as_ptr().add(r * 8));
                let yv = _mm256_loadu_ps(ys.as_ptr().add(r * 8));
                *a = _mm256_fmadd_ps(xv, yv, *a);
            }
        }
    }
    let a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    let t0 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    let t1 = _mm_hadd_ps(t0, t0);
    leftovers(_mm_cvtss_f32(_mm_hadd_ps(t1, t1)), &x[whole..n], &y[whole..n])
}

fn vec_dot_portable<T: KvElem>(x: &[T], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let whole = n / 32 * 32;
    let mut acc = [[0f32; 8]; 4];
    for (xs, ys) in x[..whole].chunks_exact(32).zip(y[..whole].chunks_exact(32)) {
        for (r, a) in acc.iter_mut().enumerate() {
            for (l, lane) in a.iter_mut().enumerate() {
                *lane = xs[r * 8 + l].to_f32().mul_add(ys[r * 8 + l], *lane);
            }
        }
    }
    leftovers(reduce4x8(&acc), &x[whole..n], &y[whole..n])
}

/// The products past the last whole step of 32, added one by one to `sum`.
fn leftovers<T: KvElem>(sum: f32, x: &[T], y: &[f32]) -> f32 {
    if T::HALF {
        let mut s = sum as f64;
        for (a, b) in x.iter().zip(y) {
            s += (a.to_f32() * b) as f64;
        }
        s as f32
    } else {
        let mut s = sum;
        for (a, b) in x.iter().zip(y) {
            s += a.to_f32() * b;
        }
        s
    }
}

/// `tinyBLAS`'s dot product: one 8-lane fused multiply-add accumulator, then [`hsum8`].
/// `x.len()` is a multiple of 8 (the caller checks).
fn dot_gemm<T: KvElem>(x: &[T], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::avx2_fma_f16c() {
            // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above).
            return unsafe { dot_gemm_avx2(x, y) };
        }
    }
    dot_gemm_portable(x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_gemm_avx2<T: KvElem>(x: &[T], y: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    for (xs, ys) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        // SAFETY: each chunk holds eight values.
        unsafe {
            acc = _mm256_fmadd_ps(T::load8(xs.as_ptr()), _mm256_loadu_ps(ys.as_ptr()), acc);
        }
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds eight f32s.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    hsum8(&lanes)
}

fn dot_gemm_portable<T: KvElem>(x: &[T], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (xs, ys) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] = xs[l].to_f32().mul_add(ys[l], acc[l]);
        }
    }
    hsum8(&acc)
}

/// `GGML_F32x8_REDUCE`: accumulators 0+2 and 1+3, then those two, then the 128-bit halves,
/// then two horizontal adds.
fn reduce4x8(acc: &[[f32; 8]; 4]) -> f32 {
    let x: [f32; 8] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    let t: [f32; 4] = std::array::from_fn(|l| x[l] + x[l + 4]);
    (t[0] + t[1]) + (t[2] + t[3])
}

/// The AVX horizontal sum ggml's softmax and tinyBLAS use: halves, then pairs 0+2 and 1+3.
fn hsum8(x: &[f32; 8]) -> f32 {
    let t: [f32; 4] = std::array::from_fn(|l| x[l + 4] + x[l]);
    (t[0] + t[2]) + (t[1] + t[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::test_values as values;

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

    /// The AVX2 dot products are the portable ones bit for bit, for f32 and f16 rows,
    /// leftovers past 32 included.
    #[test]
    fn dot_kernels_agree_exactly() {
        for n in [8, 32, 64, 70, 100] {
            let (x, y) = (values(n, 7), values(n, 8));
            let x16: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            assert_eq!(
                vec_dot(&x[..], &y).to_bits(),
                vec_dot_portable(&x[..], &y).to_bits(),
                "f32, n = {n}"
            );
            assert_eq!(
                vec_dot(&x16[..], &y).to_bits(),
                vec_dot_portable(&x16[..], &y).to_bits(),
                "f16, n = {n}"
            );
            if n % 8 == 0 {
                assert_eq!(
                    dot_gemm(&x16[..], &y).to_bits(),
                    dot_gemm_portable(&x16[..], &y).to_bits(),
                    "tinyBLAS f16, n = {n}"
                );
            }
        }
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
            let k = Tensor::from_vec(values(b * nkv * len * hd, 10), (b, nkv, len, hd), &dev)
                .unwrap();
            let v = Tensor::from_vec(values(b * nkv * len * hd, 11), (b, nkv, len, hd), &dev)
                .unwrap();
            let scale = 1.0 / (hd as f32).sqrt();
            let got = attention(&q, &half(&k), &half(&v), scale).unwrap();
            let want = general_path(&full(&half(&q)), &full(&half(&k)), &full(&half(&v)), scale);
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 2e-3, "s = {s}: max difference {diff}");
            let unrounded = general_path(&q, &k, &v, scale);
            assert!(max_abs_diff(&got, &unrounded) > 0.0, "s = {s}: nothing was rounded");
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
}
