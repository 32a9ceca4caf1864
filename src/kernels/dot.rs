//! Dot products in the orders llama.cpp's CPU backend sums them: ggml's `vec_dot_f32` /
//! `vec_dot_f16` (one activation row: four 8-lane accumulators) and llamafile's tinyBLAS (two
//! or more rows: one 8-lane accumulator per output), with their horizontal sums. Attention and
//! the dense GGUF products share them, so both round as llama.cpp does.

use super::Elem;

/// ggml's `vec_dot_f32` / `vec_dot_f16` / `vec_dot_bf16` on AVX2: four 8-lane fused
/// multiply-add accumulators over steps of 32 (bf16's source writes a multiply and an add,
/// which GCC fuses: llama.cpp builds ggml as GNU C++, where contraction is on), reduced by
/// [`reduce4x8`] (bf16: its own last steps, see [`Elem::IS_BF16`]), and any leftover past the
/// last whole step added one by one (in f64 for f16 and bf16, as ggml does).
pub(crate) fn vec_dot<T: Elem>(x: &[T], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::simd::avx2_fma_f16c() {
            // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above).
            return unsafe { vec_dot_avx2(x, y) };
        }
    }
    vec_dot_portable(x, y)
}

/// [`vec_dot`] with the intrinsics ggml's own build uses.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn vec_dot_avx2<T: Elem>(x: &[T], y: &[f32]) -> f32 {
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
    let sum = if T::IS_BF16 {
        let g = _mm_add_ps(t0, _mm_movehl_ps(t0, t0));
        _mm_cvtss_f32(_mm_add_ss(g, _mm_movehdup_ps(g)))
    } else {
        let t1 = _mm_hadd_ps(t0, t0);
        _mm_cvtss_f32(_mm_hadd_ps(t1, t1))
    };
    leftovers(sum, &x[whole..n], &y[whole..n])
}

/// Eight [`vec_dot`]s of the rows `k` with `q`, times `scale`, into `out`: the same sums in
/// the same order, with the eight final reductions done side by side (the 128-bit halves of
/// each, then two horizontal adds, as transposed vector operations). `q.len()` and every
/// row's length are a multiple of 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot8_avx2<T: Elem>(k: [&[T]; 8], q: &[f32], scale: f32, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = q.len();
    let a: [__m256; 8] = std::array::from_fn(|p| {
        let row = &k[p][..n];
        let mut acc = [_mm256_setzero_ps(); 4];
        for (xs, ys) in row.chunks_exact(32).zip(q.chunks_exact(32)) {
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: each chunk holds 32 values.
                unsafe {
                    let xv = T::load8(xs.as_ptr().add(r * 8));
                    let yv = _mm256_loadu_ps(ys.as_ptr().add(r * 8));
                    *acc = _mm256_fmadd_ps(xv, yv, *acc);
                }
            }
        }
        _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]))
    });
    // [halves of a_p | halves of a_q] = [t0_p | t0_q] for (p, q) = (0, 4) .. (3, 7).
    let halves = |p: usize, q: usize| {
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a[p], a[q]),
            _mm256_permute2f128_ps::<0x31>(a[p], a[q]),
        )
    };
    let h1 = _mm256_hadd_ps(halves(0, 4), halves(1, 5));
    let h2 = _mm256_hadd_ps(halves(2, 6), halves(3, 7));
    let sums = _mm256_mul_ps(_mm256_hadd_ps(h1, h2), _mm256_set1_ps(scale));
    let out = &mut out[..8];
    // SAFETY: `out` holds eight f32s.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sums) };
}

/// Eight [`dot_gemm`]s of the rows `k` with `q`, times `scale`, into `out`: one accumulator per
/// row as there, `q` loaded once for all eight, and [`hsum8`]'s steps done on the eight side by
/// side (halves, then lanes 0+2 and 1+3, then those two). `q.len()` and every row's length are
/// a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_gemm8_avx2<T: Elem>(k: [&[T]; 8], q: &[f32], scale: f32, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = q.len() / 8 * 8;
    let rows: [&[T]; 8] = std::array::from_fn(|p| &k[p][..n]);
    let mut a = [_mm256_setzero_ps(); 8];
    for c in (0..n).step_by(8) {
        // SAFETY: `c + 8 <= n`, and `q` and every row hold `n` values.
        unsafe {
            let qv = _mm256_loadu_ps(q.as_ptr().add(c));
            for (p, a) in a.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(T::load8(rows[p].as_ptr().add(c)), qv, *a);
            }
        }
    }
    // [lo_p + hi_p | lo_q + hi_q] for (p, q) = (0, 4) .. (3, 7).
    let halves = |p: usize, q: usize| {
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a[p], a[q]),
            _mm256_permute2f128_ps::<0x31>(a[p], a[q]),
        )
    };
    let mut res = [0f32; 8];
    for p in 0..4 {
        let h = halves(p, p + 4);
        // Lane 0 of each half: (t0 + t2) + (t1 + t3) (lane 1 holds the same sum, swapped).
        let s1 = _mm256_add_ps(h, _mm256_permute_ps::<0b01_00_11_10>(h));
        let s2 = _mm256_add_ps(s1, _mm256_permute_ps::<0b10_11_00_01>(s1));
        let mut l = [0f32; 8];
        // SAFETY: `l` holds eight f32s.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), s2) };
        res[p] = l[0] * scale;
        res[p + 4] = l[4] * scale;
    }
    out[..8].copy_from_slice(&res);
}

fn vec_dot_portable<T: Elem>(x: &[T], y: &[f32]) -> f32 {
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
    let sum = if T::IS_BF16 {
        let l: [f32; 8] =
            std::array::from_fn(|i| (acc[0][i] + acc[2][i]) + (acc[1][i] + acc[3][i]));
        let h: [f32; 4] = std::array::from_fn(|i| l[i] + l[i + 4]);
        (h[0] + h[2]) + (h[1] + h[3])
    } else {
        reduce4x8(&acc)
    };
    leftovers(sum, &x[whole..n], &y[whole..n])
}

/// The products past the last whole step of 32, added one by one to `sum`.
fn leftovers<T: Elem>(sum: f32, x: &[T], y: &[f32]) -> f32 {
    if T::IS_F16 || T::IS_BF16 {
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
pub(crate) fn dot_gemm<T: Elem>(x: &[T], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::simd::avx2_fma_f16c() {
            // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above).
            return unsafe { dot_gemm_avx2(x, y) };
        }
    }
    dot_gemm_portable(x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_gemm_avx2<T: Elem>(x: &[T], y: &[f32]) -> f32 {
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

fn dot_gemm_portable<T: Elem>(x: &[T], y: &[f32]) -> f32 {
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
pub(crate) fn hsum8(x: &[f32; 8]) -> f32 {
    let t: [f32; 4] = std::array::from_fn(|l| x[l + 4] + x[l]);
    (t[0] + t[2]) + (t[1] + t[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;
    use half::f16;

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

    /// A dense GGUF product sums each row as these dots do: `vec_dot` for one row, tinyBLAS
    /// for more (and `vec_dot` again when the width is no multiple of 8), for every stored
    /// type and for weight row counts that leave partial tiles, pairs and tasks (the 512-bit
    /// kernel's two outputs per register included, where the CPU has it).
    #[test]
    fn dense_product_orders_are_ggmls() {
        fn check<W: crate::kernels::Elem>(x: &[f32], w: &[W], m: usize, n: usize, k: usize) {
            let got = crate::kernels::dense::matmul_as_ggml(x, w, k);
            for i in 0..m {
                for j in 0..n {
                    let (xr, wr) = (&x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k]);
                    let want = if m > 1 && k.is_multiple_of(8) {
                        dot_gemm(wr, xr)
                    } else {
                        vec_dot(wr, xr)
                    };
                    assert_eq!(
                        got[i * n + j].to_bits(),
                        want.to_bits(),
                        "{}: m {m}, n {n}, k {k}, ({i}, {j})",
                        std::any::type_name::<W>()
                    );
                }
            }
        }
        for (m, k) in [(1, 64), (3, 64), (4, 64), (5, 64), (9, 64), (2, 36)] {
            for n in [1, 2, 3, 5, 8, 9, 16, 17, 35] {
                let (x, w) = (values(m * k, 3), values(n * k, 4));
                let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
                check(&x, &w16, m, n, k);
                check(&x, &wb, m, n, k);
                check(&x, &w, m, n, k);
            }
        }
    }

    /// bf16 rows: `vec_dot_bf16`'s own last reduction steps, AVX2 and portable alike.
    #[test]
    fn bf16_dot_agrees_exactly() {
        for n in [32, 64, 70, 576] {
            let (x, y) = (values(n, 9), values(n, 10));
            let xb: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
            assert_eq!(
                vec_dot(&xb[..], &y).to_bits(),
                vec_dot_portable(&xb[..], &y).to_bits(),
                "bf16, n = {n}"
            );
        }
    }

    /// Eight tinyBLAS dots at once are the eight dots one by one, bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn eight_gemm_dots_are_eight_dots() {
        if !crate::kernels::simd::avx2_fma_f16c() {
            return;
        }
        for n in [8, 64, 72, 128] {
            let q = values(n, 3);
            let rows: Vec<Vec<f16>> = (0..8)
                .map(|r| {
                    values(n, 20 + r)
                        .iter()
                        .map(|&v| f16::from_f32(v))
                        .collect()
                })
                .collect();
            let k: [&[f16]; 8] = std::array::from_fn(|r| &rows[r][..]);
            let mut out = [0f32; 8];
            // SAFETY: the CPU has the features (checked above); lengths are multiples of 8.
            unsafe { dot_gemm8_avx2(k, &q, 0.125, &mut out) };
            for r in 0..8 {
                assert_eq!(
                    out[r].to_bits(),
                    (dot_gemm(k[r], &q) * 0.125).to_bits(),
                    "n {n}, row {r}"
                );
            }
        }
    }
}
