//! The one check for the CPU features our SIMD kernels need.

/// Whether this CPU has AVX2 and FMA, which every x86 kernel here (quantized products,
/// activation quantization, the vector exp, attention's dot product) requires. The standard
/// library caches the answer, so calling it per kernel call is cheap.
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`avx2_fma`] and F16C (half-precision conversions), for the kernels that read an f16 KV
/// cache. Every AVX2 CPU made has F16C; the check keeps the kernels honest on emulators.
pub fn avx2_fma_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx2_fma() && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which instruction sums byte products in the quantized kernels: AVX2's two-step
/// `maddubs` + `madd`, or one VNNI `dpbusd` (AVX512-VNNI with VL, or AVX-VNNI), which gives the
/// same integers in one instruction. llama.cpp makes the same choice when built for a CPU with
/// VNNI, so the results stay those of its kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteDot {
    /// `maddubs` then `madd` (AVX2).
    Madd,
    /// `vpdpbusd` on 256-bit registers, AVX512-VNNI encoding.
    Avx512Vnni,
    /// `vpdpbusd` on 256-bit registers, AVX-VNNI (VEX) encoding.
    AvxVnni,
}

/// The best [`ByteDot`] this CPU has, or `None` without AVX2 and FMA. Setting `GEN_NO_VNNI`
/// in the environment picks [`ByteDot::Madd`] (to compare the two in a benchmark; the results
/// are the same). Detected once per process.
pub fn byte_dot() -> Option<ByteDot> {
    static CHOICE: std::sync::OnceLock<Option<ByteDot>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(detect_byte_dot)
}

fn detect_byte_dot() -> Option<ByteDot> {
    #[cfg(target_arch = "x86_64")]
    {
        if !avx2_fma() {
            return None;
        }
        if std::env::var_os("GEN_NO_VNNI").is_some() {
            return Some(ByteDot::Madd);
        }
        if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512vl")
        {
            Some(ByteDot::Avx512Vnni)
        } else if std::is_x86_feature_detected!("avxvnni") {
            Some(ByteDot::AvxVnni)
        } else {
            Some(ByteDot::Madd)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// How far ahead of the weights (and decode attention of the cached rows) being read the
/// kernels ask for the next ones. A
/// product reads its weights once, in order, from memory; the hardware prefetchers stop at
/// every 4 KiB page, so without this each page starts with a stall. The distance is the one
/// that measured fastest for both the quantized and the f32 products (docs/PERFORMANCE.md).
pub const PREFETCH_BYTES: usize = 4096;

/// The sum of the eight lanes of `v`, in ggml's order (`hsum_float_8`): the two halves added
/// lane by lane, then pairs, then the last two.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}
