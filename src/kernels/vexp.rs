//! ggml's vector `expf` (Arm's optimized-routines algorithm: `x = n·ln2 + b`, a degree-5
//! polynomial for `exp(b) - 1`, `2^n` built in the exponent bits), shared by the kernels that
//! must round as llama.cpp does (SwiGLU, attention's softmax) and the samplers' log-softmax.
//! Within 1.5 ulp of `exp`; the AVX2 kernel and the one-lane version give the same bits.

/// ggml's vector `expf` on eight values: the AVX2 kernel where the CPU has it, else the same
/// arithmetic one lane at a time (bit-identical: the algorithm is fused multiply-adds, integer
/// adds on the bits and compares).
pub fn exp8(x: [f32; 8]) -> [f32; 8] {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::simd::avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { avx2::exp_array(x) };
        }
    }
    x.map(exp_lane)
}

/// One lane of ggml's vector `expf` (see the AVX2 kernel for the steps).
fn exp_lane(x: f32) -> f32 {
    let shift = f32::from_bits(consts::SHIFT);
    let z = x.mul_add(f32::from_bits(consts::LOG2E), shift);
    let n = z - shift;
    let b = (-n).mul_add(
        f32::from_bits(consts::LN2_LO),
        (-n).mul_add(f32::from_bits(consts::LN2_HI), x),
    );
    let e = z.to_bits().wrapping_shl(23);
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let c = consts::C.map(f32::from_bits);
    let u = b * b;
    let j = c[4]
        .mul_add(b, c[3])
        .mul_add(u, c[2].mul_add(b, c[1]))
        .mul_add(u, c[0] * b);
    let far = n.abs() > 126.0;
    if !far {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// The constants of ggml's vector `expf`, as f32 bit patterns.
mod consts {
    pub const SHIFT: u32 = 0x4b40_0000; // 1.5 · 2^23: adding it rounds to an integer
    pub const LOG2E: u32 = 0x3fb8_aa3b;
    pub const LN2_HI: u32 = 0x3f31_7200;
    pub const LN2_LO: u32 = 0x35bf_be8e;
    /// exp(b) - 1 ≈ b·(C0 + b·(C1 + b·(C2 + b·(C3 + b·C4)))).
    pub const C: [u32; 5] = [
        0x3f7f_fff6,
        0x3eff_fedb,
        0x3e2a_af33,
        0x3d2b_9f17,
        0x3c07_2010,
    ];
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::consts::*;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn splat(bits: u32) -> __m256 {
        _mm256_set1_ps(f32::from_bits(bits))
    }

    /// `exp(x)` in eight lanes (within 1.5 ulp; overflows to infinity above about 88.7, flushes
    /// to zero below about -104).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn exp(x: __m256) -> __m256 {
        // n = round(x / ln2) through the shifter, b = x - n·ln2 with ln2 in two parts.
        let z = _mm256_fmadd_ps(x, splat(LOG2E), splat(SHIFT));
        let n = _mm256_sub_ps(z, splat(SHIFT));
        let b = _mm256_fnmadd_ps(n, splat(LN2_LO), _mm256_fnmadd_ps(n, splat(LN2_HI), x));
        // 2^n: n sits in z's low mantissa bits; shifted into the exponent and added to 1.0.
        let e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
        let k = _mm256_castsi256_ps(_mm256_add_epi32(
            e,
            _mm256_castps_si256(_mm256_set1_ps(1.0)),
        ));
        let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let far = _mm256_cmp_ps(abs_n, _mm256_set1_ps(126.0), _CMP_GT_OQ);
        // exp(b) - 1 as b·(c0 + b·(c1 + b·(c2 + b·(c3 + b·c4)))), evaluated in Estrin's form.
        let u = _mm256_mul_ps(b, b);
        let hi = _mm256_fmadd_ps(splat(C[4]), b, splat(C[3]));
        let lo = _mm256_fmadd_ps(splat(C[2]), b, splat(C[1]));
        let j = _mm256_fmadd_ps(_mm256_fmadd_ps(hi, u, lo), u, _mm256_mul_ps(splat(C[0]), b));
        if _mm256_movemask_ps(far) == 0 {
            return _mm256_fmadd_ps(j, k, k);
        }
        // |n| > 126: 2^n would leave the normal range, so scale in two factors s1 · s2.
        let nonpositive = _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ);
        let g = _mm256_and_si256(
            _mm256_castps_si256(nonpositive),
            _mm256_set1_epi32(0x8200_0000u32 as i32),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let beyond = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0), _CMP_GT_OQ);
        let scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
        let normal = _mm256_fmadd_ps(k, j, k);
        let inner = _mm256_blendv_ps(normal, scaled, far);
        _mm256_blendv_ps(inner, _mm256_mul_ps(s1, s1), beyond)
    }

    /// [`exp`] on an array.
    #[target_feature(enable = "avx2,fma")]
    pub fn exp_array(x: [f32; 8]) -> [f32; 8] {
        let mut out = [0f32; 8];
        // SAFETY: both arrays hold eight f32s.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp(_mm256_loadu_ps(x.as_ptr()))) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector exp is within 2 ulp of the exact value over the range that matters, and
    /// saturates to 0 and infinity where expf does.
    #[test]
    fn vector_exp_is_accurate_and_saturates() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let lanes: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 0.0137);
            for (got, &xi) in exp8(lanes).iter().zip(&lanes) {
                let want = (xi as f64).exp();
                let ulp = (want as f32).to_bits().abs_diff(got.to_bits());
                worst = worst.max(ulp as f64);
            }
            x += 0.1093;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        let edge = exp8([-200.0, -110.0, 0.0, 1.0, 89.0, 200.0, -0.0, 1e-8]);
        assert_eq!(edge[0], 0.0);
        assert_eq!(edge[1], 0.0);
        assert_eq!(edge[2], 1.0);
        assert!((edge[3] - std::f32::consts::E).abs() < 1e-6);
        assert_eq!(edge[4], f32::INFINITY);
        assert_eq!(edge[5], f32::INFINITY);
        assert_eq!(edge[6], 1.0);
        assert_eq!(edge[7], 1.0);
    }

    /// The one-lane version is the AVX2 kernel bit for bit, across the normal range, the
    /// two-factor scaling near the limits, and past them.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn lane_and_vector_exp_agree_exactly() {
        if !crate::kernels::simd::avx2_fma() {
            return;
        }
        let mut x = -300.0f32;
        while x < 300.0 {
            let lanes: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 0.37);
            // SAFETY: AVX2 and FMA are present (checked above).
            let fast = unsafe { avx2::exp_array(lanes) };
            for (f, &xi) in fast.iter().zip(&lanes) {
                assert_eq!(f.to_bits(), exp_lane(xi).to_bits(), "exp({xi})");
            }
            x += 2.93;
        }
        let special = [
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            -0.0,
            0.0,
            88.5,
            -103.5,
            126.9,
        ];
        // SAFETY: as above.
        let fast = unsafe { avx2::exp_array(special) };
        for (f, &xi) in fast.iter().zip(&special) {
            assert_eq!(f.to_bits(), exp_lane(xi).to_bits(), "exp({xi})");
        }
    }
}
