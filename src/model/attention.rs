//! Attention on the CPU, reading the KV cache where it lies, with llama.cpp's arithmetic (its
//! CPU backend without flash attention, f32 cache): per query head,
//!
//! 1. scores `k_j · q` as ggml's `vec_dot_f32` sums them (four 8-lane accumulators over steps
//!    of 32, then a fixed reduction), times the scale, `-inf` past the causal limit;
//! 2. softmax as `ggml_vec_soft_max_f32`: ggml's vector `expf` eight at a time, each eight's
//!    sum added in f64, then the probabilities times `(float)(1 / sum)`;
//! 3. the output `Σ p_j v_j` per dimension as the product `V · p` with `V` transposed: for one
//!    query (decode) by `vec_dot_f32` again, for several (prefill) by llamafile's `tinyBLAS`
//!    (one 8-lane accumulator over the positions, then a horizontal sum).
//!
//! Rounding the same way matters because every layer's output is quantized to int8 before the
//! next product: a difference in the last bit can flip a rounding and grow from there. The
//! general path (batched matmuls, a softmax op) also costs a dozen small ops per layer.

use crate::vexp::exp8;
use anyhow::{bail, Context, Result};
use candle_core::{CpuStorage, Device, Storage, Tensor};
use rayon::prelude::*;

/// Work (multiply-adds) below which one thread does it all: splitting costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 17;

/// A strided f32 view of a 4-d CPU tensor.
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    stride: [usize; 4],
}

impl<'a> View<'a> {
    fn row(&self, i: usize, j: usize, k: usize, len: usize) -> &'a [f32] {
        let start = self.offset + i * self.stride[0] + j * self.stride[1] + k * self.stride[2];
        &self.data[start..start + len]
    }
}

fn view<'a>(storage: &'a Storage, t: &Tensor, what: &str) -> Result<View<'a>> {
    let Storage::Cpu(CpuStorage::F32(data)) = storage else {
        bail!("attention: {what} must be f32 on the CPU");
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

/// How the output sums over positions are rounded (step 3 above).
#[derive(Clone, Copy)]
enum Reduce {
    /// `vec_dot_f32`: one query per pass (decode).
    VecDot,
    /// `tinyBLAS`: several queries per pass (prefill).
    Gemm,
}

/// `softmax(q·kᵀ · scale + causal mask) · v` for the `s` query positions that follow `pos`
/// cached ones, with grouped-query heads.
///
/// `q`: `(b, n_heads, s, head_dim)`; `k`, `v`: `(b, n_kv_heads, pos + s, head_dim)`, any strides
/// with contiguous rows (views of the cache buffers). Query `i` sees positions `0..=pos + i`.
/// Returns `(b, s, n_heads * head_dim)`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
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
    let (qv, kv, vv) = (view(&qs, &q, "q")?, view(&ks, k, "k")?, view(&vs, v, "v")?);
    let n_rep = nh / nkv;
    let reduce = if s == 1 { Reduce::VecDot } else { Reduce::Gemm };
    // Output (b, s, nh, hd): one head of one query per chunk.
    let mut out = vec![0f32; b * s * nh * hd];
    let head = |(idx, y): (usize, &mut [f32])| {
        let (bi, i, h) = (idx / (s * nh), idx / nh % s, idx % nh);
        let g = h / n_rep;
        let seen = pos + i + 1;
        let probs = softmax_scores(qv.row(bi, h, i, hd), |j| kv.row(bi, g, j, hd), seen, scale);
        weighted_sum(&probs, |j| vv.row(bi, g, j, hd), reduce, y);
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
fn softmax_scores<'a>(
    q: &[f32],
    key: impl Fn(usize) -> &'a [f32],
    seen: usize,
    scale: f32,
) -> Vec<f32> {
    // Padded to whole eights with -inf, whose exp is exactly 0, as the masked tail of
    // llama.cpp's (256-padded) row.
    let mut w = vec![f32::NEG_INFINITY; seen.div_ceil(8) * 8];
    for (j, x) in w.iter_mut().take(seen).enumerate() {
        *x = vec_dot(key(j), q) * scale;
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
fn weighted_sum<'a>(p: &[f32], value: impl Fn(usize) -> &'a [f32], reduce: Reduce, y: &mut [f32]) {
    let hd = y.len();
    // Lane l holds the positions j ≡ l (mod lanes), in order: tinyBLAS's one 8-lane
    // accumulator, or vec_dot_f32's four (accumulator (j / 8) % 4, lane j % 8).
    let lanes = match reduce {
        Reduce::Gemm => 8,
        Reduce::VecDot => 32,
    };
    let mut acc = vec![0f32; lanes * hd];
    for (j, &pj) in p.iter().enumerate() {
        let lane = &mut acc[(j % lanes) * hd..(j % lanes + 1) * hd];
        for (a, &vd) in lane.iter_mut().zip(value(j)) {
            *a = vd.mul_add(pj, *a);
        }
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

/// Adds lane `src` of `acc` (`hd` values each) into lane `dst`, `dst < src`.
fn fold_lane(acc: &mut [f32], hd: usize, dst: usize, src: usize) {
    let (lo, hi) = acc.split_at_mut(src * hd);
    for (a, b) in lo[dst * hd..(dst + 1) * hd].iter_mut().zip(&hi[..hd]) {
        *a += *b;
    }
}

/// ggml's `vec_dot_f32` on AVX2: four 8-lane fused multiply-add accumulators over steps of 32,
/// reduced by [`reduce4x8`], and any leftover past the last whole step added one by one.
fn vec_dot(x: &[f32], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { vec_dot_avx2(x, y) };
        }
    }
    vec_dot_portable(x, y)
}

/// [`vec_dot`] with the intrinsics ggml's own build uses.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn vec_dot_avx2(x: &[f32], y: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let whole = n / 32 * 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    for (xs, ys) in x[..whole].chunks_exact(32).zip(y[..whole].chunks_exact(32)) {
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: each chunk holds 32 f32s, so lanes r*8..r*8+8 are in bounds.
            unsafe {
                let xv = _mm256_loadu_ps(xs.as_ptr().add(r * 8));
                let yv = _mm256_loadu_ps(ys.as_ptr().add(r * 8));
                *a = _mm256_fmadd_ps(xv, yv, *a);
            }
        }
    }
    let a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    let t0 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    let t1 = _mm_hadd_ps(t0, t0);
    let mut sum = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
    for (a, b) in x[whole..n].iter().zip(&y[whole..n]) {
        sum += a * b;
    }
    sum
}

fn vec_dot_portable(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let whole = n / 32 * 32;
    let mut acc = [[0f32; 8]; 4];
    for (xs, ys) in x[..whole].chunks_exact(32).zip(y[..whole].chunks_exact(32)) {
        for (r, a) in acc.iter_mut().enumerate() {
            for (l, lane) in a.iter_mut().enumerate() {
                *lane = xs[r * 8 + l].mul_add(ys[r * 8 + l], *lane);
            }
        }
    }
    let mut sum = reduce4x8(&acc);
    for (a, b) in x[whole..n].iter().zip(&y[whole..n]) {
        sum += a * b;
    }
    sum
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

    /// The AVX2 dot product is the portable one bit for bit, leftovers past 32 included.
    #[test]
    fn vec_dot_kernels_agree_exactly() {
        for n in [8, 32, 64, 70, 100] {
            let (x, y) = (values(n, 7), values(n, 8));
            assert_eq!(
                vec_dot(&x, &y).to_bits(),
                vec_dot_portable(&x, &y).to_bits(),
                "n = {n}"
            );
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
        let mask: Vec<f32> = (0..s)
            .flat_map(|i| (0..len).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (s, len), &dev).unwrap();
        let scores = (q.matmul(&repeat_kv(&k, nh).t().unwrap()).unwrap() * scale as f64)
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let want = probs
            .matmul(&repeat_kv(&v, nh))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, s, nh * hd))
            .unwrap();
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
