//! Q4_0 products in the order of llama.cpp's *repacked* kernels, which llama.cpp 0.3.36 runs by
//! default on AVX2 for every Q4_0 and Q4_K matrix whose row count is a multiple of 8
//! (`ggml-cpu/repack.cpp`, `q4_0_8x8_q8_0`: the weights of 8 rows interleaved so that one
//! vector holds one block of each). Its gemv (one activation row) and gemm (groups of 4) sum
//! the same way for every output: the block's integer dot, as f32, times `d_w·d_a`, fused-added
//! into one f32 accumulator, block after block. The plain `vec_dot` keeps eight partial sums
//! per output and adds them at the end, so the two differ in the last bits (and, through the
//! next layer's int8 rounding, visibly in log-probs; docs/TESTING.md). Q4_K's repacked order
//! is in `kquant` ([`super::kquant::dot_rows_repacked`]), beside its plain kernels.
//!
//! We keep the file's layout (the weights stay in the memory map) and gather the 8 rows' blocks
//! in registers instead: the integer dots are exact, so only the float order above matters.

use super::{Format, Kind, Out, Q8Block, TILE_R};
use crate::kernels::ggml::kquant::KQuant;

/// Weight rows a repacked matrix interleaves; llama.cpp repacks only matrices with a multiple of
/// this many rows.
pub(super) const ROWS: usize = 8;

/// Whether llama.cpp would repack a `format` matrix of `rows` rows (on AVX2; its Q2_K repacking
/// needs AVX-512, IQ4_NL is not a type we compute).
pub(super) fn applies(format: Format, rows: usize) -> bool {
    matches!(format, Format::Block(Kind::Q4_0) | Format::K(KQuant::Q4K))
        && rows.is_multiple_of(ROWS)
}

/// Writes the outputs of the Q4_0 weight rows in `w` (a multiple of [`ROWS`] rows; columns
/// `first..` of `out`) for every activation row of `groups`, in the repacked order.
///
/// # Safety
/// As [`Out::write`] for columns `first..first + w.len() / row_bytes` and the rows in `groups`.
pub(super) unsafe fn fill_task(
    w: &[u8],
    row_bytes: usize,
    groups: &[&[&[Q8Block]]],
    out: Out,
    first: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::simd::avx2_fma_f16c() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above); the caller's
            // contract covers the writes.
            unsafe { avx2::fill_task(w, row_bytes, groups, out, first) };
            return;
        }
    }
    for (j, wrow) in w.chunks_exact(row_bytes).enumerate() {
        for (g, group) in groups.iter().enumerate() {
            for (r, a) in group.iter().enumerate() {
                // SAFETY: the caller's contract.
                unsafe { out.write(g * TILE_R + r, first + j, dot_scalar(wrow, a)) };
            }
        }
    }
}

/// One output in the repacked order, portably (`f32::mul_add` is the fused multiply-add).
fn dot_scalar(w: &[u8], a: &[Q8Block]) -> f32 {
    let kind = Kind::Q4_0;
    let mut acc = 0f32;
    for (blk, y) in w.chunks_exact(kind.block_bytes()).zip(a) {
        let (d, _) = kind.scales(blk);
        acc = (kind.int_dot(blk, y) as f32).mul_add(d * y.d, acc);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Out, Q8Block, ROWS, TILE_R};
    use std::arch::x86_64::*;

    const BLOCK: usize = 18; // Q4_0: d (f16), 16 bytes of nibbles

    /// [`super::fill_task`] on AVX2: per tile of 8 weight rows and up to 4 activation rows,
    /// each block's 8×4 integer dots, reduced so that lane `r` holds row `r`'s, then one fused
    /// multiply-add per lane, as llama.cpp's kernels do.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; [`super::fill_task`]'s contract.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn fill_task(
        w: &[u8],
        row_bytes: usize,
        groups: &[&[&[Q8Block]]],
        dst: Out,
        first: usize,
    ) {
        let rows = w.len() / row_bytes;
        let blocks = row_bytes / BLOCK;
        debug_assert!(rows.is_multiple_of(ROWS) && blocks * BLOCK == row_bytes);
        // SAFETY: every read is inside `w` (rows `j..j + 8`, blocks `< blocks`) or inside an
        // activation row's `blocks` blocks; the writes are the caller's contract.
        unsafe {
            let low = _mm256_set1_epi8(0x0F);
            let eight = _mm256_set1_epi8(8);
            for j in (0..rows).step_by(ROWS) {
                let base = w.as_ptr().add(j * row_bytes);
                for (g, acts) in groups.iter().enumerate() {
                    let mut acc = [_mm256_setzero_ps(); TILE_R];
                    for b in 0..blocks {
                        let mut dh = [0u16; ROWS];
                        let mut ax = [_mm256_setzero_si256(); ROWS];
                        let mut sx = [_mm256_setzero_si256(); ROWS];
                        for r in 0..ROWS {
                            let p = base.add(r * row_bytes + b * BLOCK);
                            dh[r] = u16::from_le_bytes([*p, *p.add(1)]);
                            let raw = _mm_loadu_si128(p.add(2) as *const __m128i);
                            let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
                            let x = _mm256_sub_epi8(_mm256_and_si256(both, low), eight);
                            ax[r] = _mm256_sign_epi8(x, x);
                            sx[r] = x;
                        }
                        let dw = _mm256_cvtph_ps(_mm_loadu_si128(dh.as_ptr() as *const __m128i));
                        for (i, a) in acts.iter().enumerate() {
                            let y = a.get_unchecked(b);
                            let yv = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                            // |x|·sign(y, x): 16 pair sums of at most 2·8·127 per row, so even
                            // all 32 products (≤ 32,512) fit the 16-bit adds below.
                            let p: [__m256i; ROWS] = std::array::from_fn(|r| {
                                _mm256_maddubs_epi16(ax[r], _mm256_sign_epi8(yv, sx[r]))
                            });
                            let h01 = _mm256_hadd_epi16(p[0], p[1]);
                            let h23 = _mm256_hadd_epi16(p[2], p[3]);
                            let h45 = _mm256_hadd_epi16(p[4], p[5]);
                            let h67 = _mm256_hadd_epi16(p[6], p[7]);
                            let h03 = _mm256_hadd_epi16(h01, h23);
                            let h47 = _mm256_hadd_epi16(h45, h67);
                            // Each 128-bit half: rows 0..8's sums over that half's products.
                            let h = _mm256_hadd_epi16(h03, h47);
                            let s = _mm_add_epi16(
                                _mm256_castsi256_si128(h),
                                _mm256_extracti128_si256(h, 1),
                            );
                            let s = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(s));
                            let d = _mm256_mul_ps(dw, _mm256_set1_ps(y.d));
                            acc[i] = _mm256_fmadd_ps(s, d, acc[i]);
                        }
                    }
                    for (i, acc) in acc.iter().take(acts.len()).enumerate() {
                        let mut v = [0f32; ROWS];
                        _mm256_storeu_ps(v.as_mut_ptr(), *acc);
                        for (r, &v) in v.iter().enumerate() {
                            dst.write(g * TILE_R + i, first + j + r, v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ggml::quantize_row;
    use crate::kernels::test_values as values;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn q4_0(n: usize, k: usize, seed: u32) -> Vec<u8> {
        let w = Tensor::from_vec(values(n * k, seed), (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&w, GgmlDType::Q4_0)
            .unwrap()
            .data()
            .unwrap()
            .into_owned()
    }

    /// The SIMD kernel gives the portable order's outputs bit for bit, for every group size,
    /// with extreme activations (±127 bytes) and all-zero blocks.
    #[test]
    fn simd_equals_scalar_bit_for_bit() {
        let (n, k) = (24, 320);
        let w = q4_0(n, k, 3);
        let row_bytes = w.len() / n;
        for m in 1..=6 {
            let mut x = values(m * k, 9);
            x[5] = 50.0;
            let last = x.len() - 1;
            x[k.min(last)] = -50.0;
            x[64..96].fill(0.0);
            let acts: Vec<Q8Block> = x
                .chunks(k)
                .flat_map(|r| quantize_row(r, Kind::Q4_0))
                .collect();
            let rows: Vec<&[Q8Block]> = acts.chunks(k / 32).collect();
            let groups: Vec<&[&[Q8Block]]> = rows.chunks(TILE_R).collect();
            let mut got = vec![0f32; m * n];
            // SAFETY: one call writes every output of `got`.
            unsafe { fill_task(&w, row_bytes, &groups, Out::new(got.as_mut_ptr(), n), 0) };
            for (i, a) in rows.iter().enumerate() {
                for (j, wrow) in w.chunks_exact(row_bytes).enumerate() {
                    let want = dot_scalar(wrow, a);
                    assert_eq!(got[i * n + j].to_bits(), want.to_bits(), "m {m} [{i},{j}]");
                }
            }
        }
    }

    /// The repacked order is a reordering of the plain product's sums: equal up to rounding.
    #[test]
    fn repacked_order_is_the_plain_product_up_to_rounding() {
        let (n, k) = (8, 4096);
        let w = q4_0(n, k, 5);
        let row_bytes = w.len() / n;
        let a = quantize_row(&values(k, 1), Kind::Q4_0);
        for wrow in w.chunks_exact(row_bytes) {
            let (rep, plain) = (
                dot_scalar(wrow, &a),
                super::super::dot_scalar(Kind::Q4_0, wrow, &a),
            );
            assert!(
                (rep - plain).abs() <= 1e-4 * plain.abs().max(1.0),
                "{rep} vs {plain}"
            );
        }
    }
}
