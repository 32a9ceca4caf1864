//! Products with dense weights (f32, or bf16/f16 widened to f32 as they are read, which is
//! exact) for a few activation rows: a decode step, beams, a small batch. Such a product reads
//! every weight once and does two flops per weight read, so it runs at the speed memory
//! delivers the weights; candle's general matrix product (built for large blocks) leaves much
//! of that bandwidth unused for one row. Here each task streams its own rows of the weight
//! once, prefetched ahead, and every activation row is multiplied with a weight row while it is
//! in L1; sums are in f32 and in the same order whatever the stored type, so bf16 weights give
//! exactly the results of the same weights widened to f32. Larger inputs (prefill) go to
//! candle's blocked product.

use super::{Elem, Out};

/// The most activation rows this kernel takes; larger products go to candle's blocked gemm,
/// which reuses each weight from cache across many rows. The crossover was measured on the f32
/// SmolLM2 folder (docs/PERFORMANCE.md): gemm wins from a few dozen rows.
pub const MAX_ROWS: usize = 16;

/// Activation rows multiplied with each weight row at once (each keeps two accumulators).
const TILE_R: usize = 4;

/// Weight rows per parallel task: 16 rows of 576 floats are 36 KiB.
const ROWS_PER_TASK: usize = 16;

/// `x · wᵀ`: `x` is `m × k` (row-major), `w` is `n × k`; returns `m × n`. `m` at most
/// [`MAX_ROWS`] (checked).
pub fn matmul<W: Elem>(x: &[f32], w: &[W], k: usize) -> Vec<f32> {
    assert!(k > 0 && x.len().is_multiple_of(k) && w.len().is_multiple_of(k));
    let (m, n) = (x.len() / k, w.len() / k);
    assert!(
        m <= MAX_ROWS,
        "dense matmul takes at most {MAX_ROWS} rows, got {m}"
    );
    let mut out = vec![0f32; m * n];
    let dst = Out::new(out.as_mut_ptr(), n);
    let rows: Vec<&[f32]> = x.chunks(k).collect();
    crate::kernels::pool::run(n.div_ceil(ROWS_PER_TASK), &|t| {
        let first = t * ROWS_PER_TASK;
        let last = (first + ROWS_PER_TASK).min(n);
        let ws = &w[first * k..last * k];
        for (g, group) in rows.chunks(TILE_R).enumerate() {
            // SAFETY: this task alone writes columns `first..last` (< n) of rows `< m`.
            unsafe { fill(ws, k, group, dst, g * TILE_R, first) };
        }
    });
    out
}

/// `x · wᵀ` summed as llama.cpp's CPU backend sums GGUF f32/f16 products: one activation row
/// with ggml's `vec_dot` (a decode step), two or more with llamafile's tinyBLAS (one 8-lane
/// accumulator per output, when `k` is a multiple of 8; otherwise ggml falls back to `vec_dot`
/// too). `x` is `m × k` (any `m`), `w` is `n × k`; returns `m × n`.
pub fn matmul_as_ggml<W: Elem>(x: &[f32], w: &[W], k: usize) -> Vec<f32> {
    assert!(k > 0 && x.len().is_multiple_of(k) && w.len().is_multiple_of(k));
    let (m, n) = (x.len() / k, w.len() / k);
    let mut out = vec![0f32; m * n];
    let dst = Out::new(out.as_mut_ptr(), n);
    let tiny_blas = m > 1 && k.is_multiple_of(8);
    crate::kernels::pool::run(n.div_ceil(ROWS_PER_TASK), &|t| {
        let first = t * ROWS_PER_TASK;
        let last = (first + ROWS_PER_TASK).min(n);
        #[cfg(target_arch = "x86_64")]
        if tiny_blas && crate::kernels::simd::avx512() {
            // SAFETY: the CPU has AVX-512 F, BW, VL, AVX2, FMA and F16C (checked just above);
            // this task alone writes columns `first..last` (< n); `k` is a multiple of 8.
            unsafe { avx512::tiny_blas(x, w, k, first..last, dst) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if tiny_blas && crate::kernels::simd::avx2_fma_f16c() {
            // SAFETY: the CPU has the features (checked just above); this task alone writes
            // columns `first..last` (< n); `k` is a multiple of 8.
            unsafe { avx2::tiny_blas(x, w, k, first..last, dst) };
            return;
        }
        for j in first..last {
            let wr = &w[j * k..(j + 1) * k];
            for (i, xr) in x.chunks_exact(k).enumerate() {
                let v = if tiny_blas {
                    super::dot::dot_gemm(wr, xr)
                } else {
                    super::dot::vec_dot(wr, xr)
                };
                // SAFETY: this task alone writes columns `first..last` (< n) of rows `< m`.
                unsafe { dst.write(i, j, v) };
            }
        }
    });
    out
}

/// Writes `group[r] · ws[j]` at `(row0 + r, first + j)` for every weight row `j` of `ws`.
///
/// # Safety
/// As [`Out::write`] for those cells.
unsafe fn fill<W: Elem>(ws: &[W], k: usize, group: &[&[f32]], dst: Out, row0: usize, first: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::simd::avx2_fma_f16c() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above); the caller's
            // contract.
            unsafe {
                match group.len() {
                    1 => avx2::fill::<W, 1>(ws, k, group, dst, row0, first),
                    2 => avx2::fill::<W, 2>(ws, k, group, dst, row0, first),
                    3 => avx2::fill::<W, 3>(ws, k, group, dst, row0, first),
                    _ => avx2::fill::<W, 4>(ws, k, group, dst, row0, first),
                }
            }
            return;
        }
    }
    for (j, w) in ws.chunks(k).enumerate() {
        for (r, a) in group.iter().enumerate() {
            let v = w.iter().zip(a.iter()).map(|(w, a)| w.to_f32() * a).sum();
            // SAFETY: the caller's contract.
            unsafe { dst.write(row0 + r, first + j, v) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {

    use super::{Elem, Out};
    use crate::kernels::simd::{hsum, PREFETCH_BYTES};
    use std::arch::x86_64::*;

    /// tinyBLAS's products for the weight rows `rows`: tiles of 4 activation rows × 2 weight
    /// rows held in registers, each output one 8-lane accumulator over `k` in order, then
    /// [`hsum8`](crate::kernels::dot::hsum8): every output is exactly
    /// [`dot_gemm`](crate::kernels::dot::dot_gemm) of its two rows, only faster.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `k` is a multiple of 8; no other task writes the
    /// columns `rows` of `dst`, which is `x.len() / k` × at least `rows.end`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tiny_blas<W: Elem>(
        x: &[f32],
        w: &[W],
        k: usize,
        rows: std::ops::Range<usize>,
        dst: Out,
    ) {
        const RM: usize = 4;
        const RN: usize = 2;
        let m = x.len() / k;
        // Activation tiles outside, the task's few weight rows inside: both stay in L1.
        let mut i = 0;
        while i < m {
            let rm = RM.min(m - i);
            let mut j = rows.start;
            while j < rows.end {
                let rn = RN.min(rows.end - j);
                let mut acc = [[_mm256_setzero_ps(); RM]; RN];
                for l in (0..k).step_by(8) {
                    // SAFETY: rows `i..i + rm` of x and `j..j + rn` of w exist and hold `k`
                    // values; `l + 8 <= k`.
                    unsafe {
                        let xv: [__m256; RM] = std::array::from_fn(|r| {
                            if r < rm {
                                _mm256_loadu_ps(x.as_ptr().add((i + r) * k + l))
                            } else {
                                _mm256_setzero_ps()
                            }
                        });
                        for (c, a) in acc.iter_mut().enumerate().take(rn) {
                            let wv = W::load8(w.as_ptr().add((j + c) * k + l));
                            for r in 0..rm {
                                a[r] = _mm256_fmadd_ps(wv, xv[r], a[r]);
                            }
                        }
                    }
                }
                for (c, a) in acc.iter().enumerate().take(rn) {
                    for (r, v) in a.iter().enumerate().take(rm) {
                        let mut lanes = [0f32; 8];
                        // SAFETY: `lanes` holds eight f32s; the caller's contract for `dst`.
                        unsafe {
                            _mm256_storeu_ps(lanes.as_mut_ptr(), *v);
                            dst.write(i + r, j + c, crate::kernels::dot::hsum8(&lanes));
                        }
                    }
                }
                j += rn;
            }
            i += rm;
        }
    }
    /// [`super::fill`] for `R` activation rows: 16 floats per step, two accumulators per row,
    /// the tail (k not a multiple of 16) in scalar.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; as [`Out::write`] for the cells written.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn fill<W: Elem, const R: usize>(
        ws: &[W],
        k: usize,
        group: &[&[f32]],
        dst: Out,
        row0: usize,
        first: usize,
    ) {
        // The unchecked reads below stay inside these bounds.
        assert!(group.len() == R && group.iter().all(|a| a.len() == k));
        assert!(ws.len().is_multiple_of(k));
        // SAFETY: the CPU features and the writes are the caller's contract; every read is of
        // `w` or a row of `group` at an index below `k` (`c + 16 <= body <= k`, `i < k`).
        unsafe {
            let body = k - k % 16;
            let mut a = [std::ptr::null::<f32>(); R];
            for r in 0..R {
                a[r] = group[r].as_ptr();
            }
            for (j, w) in ws.chunks_exact(k).enumerate() {
                let wp = w.as_ptr();
                let mut acc = [[_mm256_setzero_ps(); 2]; R];
                let mut c = 0;
                while c < body {
                    _mm_prefetch::<_MM_HINT_T0>(
                        (wp.add(c) as *const i8).wrapping_add(PREFETCH_BYTES),
                    );
                    let w0 = W::load8(wp.add(c));
                    let w1 = W::load8(wp.add(c + 8));
                    for r in 0..R {
                        acc[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a[r].add(c)), acc[r][0]);
                        acc[r][1] =
                            _mm256_fmadd_ps(w1, _mm256_loadu_ps(a[r].add(c + 8)), acc[r][1]);
                    }
                    c += 16;
                }
                for r in 0..R {
                    let mut v = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
                    for i in body..k {
                        v += w.get_unchecked(i).to_f32() * *a[r].add(i);
                    }
                    dst.write(row0 + r, first + j, v);
                }
            }
        }
    }
}

/// tinyBLAS's products in 512-bit registers: each register holds two outputs, two weight rows'
/// eight lanes side by side against one activation row, so every output is the same 8-lane
/// accumulator as in [`avx2::tiny_blas`] (same bits) at half the instructions.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Elem, Out};
    use std::arch::x86_64::*;

    /// Activation rows per tile.
    const RM: usize = 4;
    /// Pairs of weight rows per tile (16 accumulators, 4 activation and 4 weight registers).
    const RP: usize = 4;

    /// [`super::avx2::tiny_blas`] for the weight rows `rows`, in tiles of [`RM`] activation
    /// rows by [`RP`] pairs of weight rows (fewer pairs at the end; a last odd row goes to the
    /// 256-bit kernel).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA, F16C, AVX512F, AVX512BW and AVX512VL; otherwise as
    /// [`super::avx2::tiny_blas`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub unsafe fn tiny_blas<W: Elem>(
        x: &[f32],
        w: &[W],
        k: usize,
        rows: std::ops::Range<usize>,
        dst: Out,
    ) {
        let m = x.len() / k;
        // SAFETY: this function's contract; `tile` reads rows `i..i + rm` of `x` and
        // `j..j + 2p` of `w`, all below `m` and `rows.end`.
        unsafe {
            let mut j = rows.start;
            while j + 2 <= rows.end {
                let pairs = RP.min((rows.end - j) / 2);
                for i in (0..m).step_by(RM) {
                    let rm = RM.min(m - i);
                    match pairs {
                        1 => tile::<W, 1>(x, w, k, i, rm, j, dst),
                        2 => tile::<W, 2>(x, w, k, i, rm, j, dst),
                        3 => tile::<W, 3>(x, w, k, i, rm, j, dst),
                        _ => tile::<W, RP>(x, w, k, i, rm, j, dst),
                    }
                }
                j += 2 * pairs;
            }
            if j < rows.end {
                super::avx2::tiny_blas(x, w, k, j..rows.end, dst);
            }
        }
    }

    /// Activation rows `i..i + rm` against the weight rows `j..j + 2P`.
    ///
    /// # Safety
    /// As [`tiny_blas`]; those rows exist (`rm <= RM`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<W: Elem, const P: usize>(
        x: &[f32],
        w: &[W],
        k: usize,
        i: usize,
        rm: usize,
        j: usize,
        dst: Out,
    ) {
        assert!((i + rm) * k <= x.len() && (j + 2 * P) * k <= w.len() && rm <= RM);
        // SAFETY: every read is of a row asserted above at an offset below `k` (`l + 8 <= k`);
        // the writes are the caller's contract.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); RM]; P];
            for l in (0..k).step_by(8) {
                let xv: [__m512; RM] = std::array::from_fn(|r| {
                    if r < rm {
                        let p = x.as_ptr().add((i + r) * k + l);
                        _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(
                            p,
                        ))))
                    } else {
                        _mm512_setzero_ps()
                    }
                });
                for (c, a) in acc.iter_mut().enumerate() {
                    let lo = w.as_ptr().add((j + 2 * c) * k + l);
                    let wv = W::load8x2(lo, lo.add(k));
                    for r in 0..RM {
                        a[r] = _mm512_fmadd_ps(wv, xv[r], a[r]);
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                for (r, v) in a.iter().enumerate().take(rm) {
                    let mut lanes = [0f32; 16];
                    _mm512_storeu_ps(lanes.as_mut_ptr(), *v);
                    let lo: [f32; 8] = std::array::from_fn(|l| lanes[l]);
                    let hi: [f32; 8] = std::array::from_fn(|l| lanes[8 + l]);
                    dst.write(i + r, j + 2 * c, crate::kernels::dot::hsum8(&lo));
                    dst.write(i + r, j + 2 * c + 1, crate::kernels::dot::hsum8(&hi));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    /// The kernel against a plain f64 product, for every row count it takes, widths with and
    /// without a scalar tail, and weight counts that leave a partial task.
    #[test]
    fn matches_plain_product() {
        for &k in &[16, 40, 576] {
            for &n in &[1, 17, 50] {
                let w = test_values(n * k, 3);
                for m in 1..=MAX_ROWS {
                    let x = test_values(m * k, 7 + m as u32);
                    let got = matmul(&x, &w, k);
                    for i in 0..m {
                        for j in 0..n {
                            let want: f64 = (0..k)
                                .map(|c| x[i * k + c] as f64 * w[j * k + c] as f64)
                                .sum();
                            let g = got[i * n + j] as f64;
                            assert!(
                                (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "k={k} n={n} m={m} ({i},{j}): {g} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// bf16 and f16 weights give exactly the results of the same values widened to f32.
    #[test]
    fn half_weights_equal_widened_weights() {
        let (k, n) = (600, 33);
        let w = test_values(n * k, 5);
        let bf: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let hf: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
        let bf_wide: Vec<f32> = bf.iter().map(|v| v.to_f32()).collect();
        let hf_wide: Vec<f32> = hf.iter().map(|v| v.to_f32()).collect();
        for m in 1..=MAX_ROWS {
            let x = test_values(m * k, 11 + m as u32);
            assert_eq!(matmul(&x, &bf, k), matmul(&x, &bf_wide, k), "bf16, m={m}");
            assert_eq!(matmul(&x, &hf, k), matmul(&x, &hf_wide, k), "f16, m={m}");
        }
    }
}
