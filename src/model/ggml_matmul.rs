//! Quantized matrix products computed the way ggml's CPU backend computes them, for the
//! weight types where that matters to us (Q4_1, Q8_0): activations are quantized per block of
//! 32 with `id = 127 / amax` and round-half-to-even (ggml's AVX2 `quantize_row_q8_{0,1}`), then
//! dotted with the weight blocks in integers. Matching ggml's rounding keeps our logits within
//! float-summation noise of llama.cpp on the same file; candle's own kernels quantize
//! activations differently (and have no SIMD path for Q4_1).

use anyhow::{bail, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;
use rayon::prelude::*;

const QK: usize = 32;

/// A weight matrix `(rows, cols)` in a ggml block format we compute ourselves.
#[derive(Debug)]
pub struct GgmlMatrix {
    kind: Kind,
    rows: usize,
    cols: usize,
    /// Raw ggml blocks, row-major: `rows * cols / 32` blocks.
    data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Q4_1,
    Q8_0,
}

impl Kind {
    fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_1 => 20, // d: f16, m: f16, qs: [u8; 16]
            Kind::Q8_0 => 34, // d: f16, qs: [i8; 32]
        }
    }
}

/// One block of quantized activations, scales already widened to f32.
#[derive(Debug, Clone, Copy)]
struct Q8Block {
    d: f32,
    /// `d * sum(qs)` rounded through f16, as ggml's block_q8_1 stores it (Q4_1 only).
    s: f32,
    qs: [i8; QK],
}

impl GgmlMatrix {
    /// Takes over a CPU QTensor of a supported type; `None` for other types.
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Self>> {
        let kind = match q.dtype() {
            GgmlDType::Q4_1 => Kind::Q4_1,
            GgmlDType::Q8_0 => Kind::Q8_0,
            _ => return Ok(None),
        };
        if !matches!(q.device(), Device::Cpu) {
            return Ok(None);
        }
        let (rows, cols) = q.shape().dims2()?;
        if cols % QK != 0 {
            bail!("quantized matrix has {cols} columns, not a multiple of the block size {QK}");
        }
        let data = q.data()?.into_owned();
        if data.len() != rows * cols / QK * kind.block_bytes() {
            bail!(
                "quantized matrix data has {} bytes, expected {}",
                data.len(),
                rows * cols / QK * kind.block_bytes()
            );
        }
        Ok(Some(Self {
            kind,
            rows,
            cols,
            data,
        }))
    }

    /// `x @ selfᵀ` for `x` of shape `(..., cols)`: returns `(..., rows)` in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let Some((&k, lead)) = dims.split_last() else {
            bail!("matmul input must have at least one dimension");
        };
        if k != self.cols {
            bail!(
                "matmul input has {k} features, the weight expects {}",
                self.cols
            );
        }
        let m: usize = lead.iter().product();
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let acts: Vec<Vec<Q8Block>> = xs
            .chunks(k)
            .map(|row| quantize_row(row, self.kind))
            .collect();
        let n = self.rows;
        let row_bytes = self.cols / QK * self.kind.block_bytes();
        // out_t is (n, m): each weight row is read once for all activation rows.
        let mut out_t = vec![0f32; n * m];
        const ROWS_PER_TASK: usize = 16;
        out_t
            .par_chunks_mut(ROWS_PER_TASK * m)
            .enumerate()
            .for_each(|(task, chunk)| {
                for (j, out_row) in chunk.chunks_mut(m).enumerate() {
                    let r = task * ROWS_PER_TASK + j;
                    let w = &self.data[r * row_bytes..(r + 1) * row_bytes];
                    // Up to four activation rows share each weight block's load and unpacking
                    // (beams, batched prompts); each row's arithmetic is the single-row one.
                    for (outs, a) in out_row.chunks_mut(MULTI).zip(acts.chunks(MULTI)) {
                        match self.kind {
                            Kind::Q4_1 => dot_q4_1_multi(w, a, outs),
                            Kind::Q8_0 => dot_q8_0_multi(w, a, outs),
                        }
                    }
                }
            });
        let out = if m == 1 {
            out_t
        } else {
            let mut out = vec![0f32; m * n];
            for r in 0..n {
                for i in 0..m {
                    out[i * n + r] = out_t[r * m + i];
                }
            }
            out
        };
        let mut shape = lead.to_vec();
        shape.push(n);
        Ok(Tensor::from_vec(out, shape, x.device())?)
    }
}

/// ggml's AVX2 `quantize_row_q8_1` / `quantize_row_q8_0`.
fn quantize_row(x: &[f32], kind: Kind) -> Vec<Q8Block> {
    x.chunks_exact(QK)
        .map(|b| {
            let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let mut qs = [0i8; QK];
            let mut sum = 0i32;
            for (q, &v) in qs.iter_mut().zip(b) {
                *q = (v * id).round_ties_even() as i8;
                sum += *q as i32;
            }
            let s = match kind {
                Kind::Q4_1 => f16::from_f32(d * sum as f32).to_f32(),
                Kind::Q8_0 => 0.0,
            };
            Q8Block {
                d: f16::from_f32(d).to_f32(),
                s,
                qs,
            }
        })
        .collect()
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn dot_q4_1(w: &[u8], a: &[Q8Block]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { avx2::dot_q4_1(w, a) };
        }
    }
    dot_q4_1_scalar(w, a)
}

/// Activation rows computed together against one weight row.
const MULTI: usize = 4;

/// `outs[i] = dot_q4_1(w, a[i])` for up to [`MULTI`] rows, bit-identical to the single-row
/// product.
fn dot_q4_1_multi(w: &[u8], a: &[Vec<Q8Block>], outs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if a.len() > 1
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { avx2::dot_q4_1_multi(w, a, outs) };
            return;
        }
    }
    for (o, a) in outs.iter_mut().zip(a) {
        *o = dot_q4_1(w, a);
    }
}

/// `outs[i] = dot_q8_0(w, a[i])` for up to [`MULTI`] rows, bit-identical to the single-row
/// product.
fn dot_q8_0_multi(w: &[u8], a: &[Vec<Q8Block>], outs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if a.len() > 1
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { avx2::dot_q8_0_multi(w, a, outs) };
            return;
        }
    }
    for (o, a) in outs.iter_mut().zip(a) {
        *o = dot_q8_0(w, a);
    }
}

fn dot_q4_1_scalar(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut acc = 0f32;
    let mut summs = 0f32;
    for (blk, y) in w.chunks_exact(20).zip(a) {
        let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
        let qs = &blk[4..20];
        let (lo, hi) = y.qs.split_at(16);
        let sumi: i32 = qs
            .iter()
            .zip(lo.iter().zip(hi))
            .map(|(&q, (&a, &b))| (q & 0x0F) as i32 * a as i32 + (q >> 4) as i32 * b as i32)
            .sum();
        acc += d * y.d * sumi as f32;
        summs += m * y.s;
    }
    acc + summs
}

fn dot_q8_0(w: &[u8], a: &[Q8Block]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { avx2::dot_q8_0(w, a) };
        }
    }
    dot_q8_0_scalar(w, a)
}

fn dot_q8_0_scalar(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut acc = 0f32;
    for (blk, y) in w.chunks_exact(34).zip(a) {
        let d = f16_at(blk, 0);
        let sumi: i32 = blk[2..34]
            .iter()
            .zip(&y.qs)
            .map(|(&q, &v)| q as i8 as i32 * v as i32)
            .sum();
        acc += d * y.d * sumi as f32;
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{f16_at, Q8Block};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Unsigned bytes times signed bytes, summed in pairs then quads, as floats (8 lanes).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn mul_sum_us8(ux: __m256i, sy: __m256i) -> __m256 {
        let dot = _mm256_maddubs_epi16(ux, sy);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4_1(w: &[u8], a: &[Q8Block]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        let low = _mm256_set1_epi8(0x0F);
        for (blk, y) in w.chunks_exact(20).zip(a) {
            let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
            summs += m * y.s;
            let raw = _mm_loadu_si128(blk.as_ptr().add(4) as *const __m128i);
            // Low nibbles are elements 0..16, high nibbles 16..32.
            let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
            let qx = _mm256_and_si256(both, low);
            let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            let xy = mul_sum_us8(qx, qy);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), xy, acc);
        }
        hsum(acc) + summs
    }

    /// [`dot_q4_1`] for up to `super::MULTI` activation rows at once: each weight block is
    /// loaded and unpacked once; every row accumulates exactly as in the single-row kernel.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4_1_multi(w: &[u8], a: &[Vec<Q8Block>], outs: &mut [f32]) {
        let rows = a.len().min(super::MULTI).min(outs.len());
        let mut acc = [_mm256_setzero_ps(); super::MULTI];
        let mut summs = [0f32; super::MULTI];
        let low = _mm256_set1_epi8(0x0F);
        for (b, blk) in w.chunks_exact(20).enumerate() {
            let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
            let raw = _mm_loadu_si128(blk.as_ptr().add(4) as *const __m128i);
            let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
            let qx = _mm256_and_si256(both, low);
            for r in 0..rows {
                let y = &a[r][b];
                summs[r] += m * y.s;
                let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                let xy = mul_sum_us8(qx, qy);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), xy, acc[r]);
            }
        }
        for r in 0..rows {
            outs[r] = hsum(acc[r]) + summs[r];
        }
    }

    /// [`dot_q8_0`] for up to `super::MULTI` activation rows sharing each weight block's load.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q8_0_multi(w: &[u8], a: &[Vec<Q8Block>], outs: &mut [f32]) {
        let rows = a.len().min(super::MULTI).min(outs.len());
        let mut acc = [_mm256_setzero_ps(); super::MULTI];
        for (b, blk) in w.chunks_exact(34).enumerate() {
            let d = f16_at(blk, 0);
            let qx = _mm256_loadu_si256(blk.as_ptr().add(2) as *const __m256i);
            let ax = _mm256_sign_epi8(qx, qx);
            for r in 0..rows {
                let y = &a[r][b];
                let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                let sy = _mm256_sign_epi8(qy, qx);
                let xy = mul_sum_us8(ax, sy);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), xy, acc[r]);
            }
        }
        for r in 0..rows {
            outs[r] = hsum(acc[r]);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q8_0(w: &[u8], a: &[Q8Block]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (blk, y) in w.chunks_exact(34).zip(a) {
            let d = f16_at(blk, 0);
            let qx = _mm256_loadu_si256(blk.as_ptr().add(2) as *const __m256i);
            let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            // Signed x signed via |x| and sign transfer, as ggml does.
            let ax = _mm256_sign_epi8(qx, qx);
            let sy = _mm256_sign_epi8(qy, qx);
            let xy = mul_sum_us8(ax, sy);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), xy, acc);
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0)
                    * 2.0
                    - 1.0
            })
            .collect()
    }

    /// Rows computed together (beams, prompt batches) give bit-for-bit the single-row result.
    #[test]
    fn batched_rows_equal_single_rows_exactly() {
        for dt in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (n, k, m) = (40, 96, 6);
            let w = Tensor::from_vec(row(n * k, 5), (n, k), &Device::Cpu).unwrap();
            let mat = GgmlMatrix::from_qtensor(&QTensor::quantize(&w, dt).unwrap())
                .unwrap()
                .unwrap();
            let x = Tensor::from_vec(row(m * k, 11), (m, k), &Device::Cpu).unwrap();
            let all = mat.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            for (i, got) in all.iter().enumerate() {
                let one = mat.forward(&x.narrow(0, i, 1).unwrap()).unwrap();
                assert_eq!(got, &one.to_vec2::<f32>().unwrap()[0], "{dt:?} row {i}");
            }
        }
    }

    /// Our product against dequantized weights times quantized-then-dequantized activations.
    #[test]
    fn matches_dequantized_reference() {
        for dt in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (n, k, m) = (40, 96, 3);
            let w = Tensor::from_vec(row(n * k, 7), (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dt).unwrap();
            let mat = GgmlMatrix::from_qtensor(&q).unwrap().unwrap();
            let x = Tensor::from_vec(row(m * k, 99), (m, k), &Device::Cpu).unwrap();
            let got = mat.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let wd = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let xs = x.to_vec2::<f32>().unwrap();
            for i in 0..m {
                let kind = if dt == GgmlDType::Q4_1 {
                    Kind::Q4_1
                } else {
                    Kind::Q8_0
                };
                let xq: Vec<f32> = quantize_row(&xs[i], kind)
                    .iter()
                    .flat_map(|b| b.qs.map(|q| q as f32 * b.d))
                    .collect();
                for r in 0..n {
                    let want: f32 = wd[r].iter().zip(&xq).map(|(a, b)| a * b).sum();
                    assert!(
                        (got[i][r] - want).abs() < 2e-3,
                        "{dt:?} [{i},{r}]: {} vs {want}",
                        got[i][r]
                    );
                }
            }
        }
    }

    /// The SIMD kernels and the portable fallback agree (the fallback runs on CPUs without
    /// AVX2, which this machine is not).
    #[test]
    fn simd_and_scalar_dots_agree() {
        let k = 256;
        let w = Tensor::from_vec(row(k, 3), (1, k), &Device::Cpu).unwrap();
        let x = row(k, 11);
        for (dt, kind) in [(GgmlDType::Q4_1, Kind::Q4_1), (GgmlDType::Q8_0, Kind::Q8_0)] {
            let q = QTensor::quantize(&w, dt).unwrap();
            let bytes = q.data().unwrap().into_owned();
            let a = quantize_row(&x, kind);
            let (fast, slow) = match kind {
                Kind::Q4_1 => (dot_q4_1(&bytes, &a), dot_q4_1_scalar(&bytes, &a)),
                Kind::Q8_0 => (dot_q8_0(&bytes, &a), dot_q8_0_scalar(&bytes, &a)),
            };
            assert!(
                (fast - slow).abs() <= 1e-4 * slow.abs().max(1.0),
                "{dt:?}: {fast} vs {slow}"
            );
        }
    }

    #[test]
    fn quantization_rounds_half_to_even_with_127_over_amax() {
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        let b = &quantize_row(&x, Kind::Q8_0)[0];
        assert_eq!((b.qs[0], b.qs[1], b.qs[2]), (127, 2, -4));
    }
}
