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

/// The best [`ByteDot`] this CPU has, or `None` without AVX2, FMA and F16C (the quantized
/// kernels convert the blocks' f16 scales with it). Setting `GEN_NO_VNNI`
/// in the environment picks [`ByteDot::Madd`] (to compare the two in a benchmark; the results
/// are the same). Detected once per process.
pub fn byte_dot() -> Option<ByteDot> {
    static CHOICE: std::sync::OnceLock<Option<ByteDot>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(detect_byte_dot)
}

fn detect_byte_dot() -> Option<ByteDot> {
    #[cfg(target_arch = "x86_64")]
    {
        if !avx2_fma_f16c() {
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

/// Whether the prefill kernels may use 512-bit registers: AVX512 F, BW and VL besides
/// [`avx2_fma_f16c`]. They give the same bits as the 256-bit ones (two 8-lane outputs per
/// register, never one output over 16 lanes); setting `GEN_NO_AVX512` in the environment keeps
/// the 256-bit kernels (to compare the two in a benchmark). Detected once per process.
pub fn avx512() -> bool {
    static CHOICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            avx2_fma_f16c()
                && std::env::var_os("GEN_NO_AVX512").is_none()
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// [`avx512`] with AVX512-VNNI as the byte dot (not told off by `GEN_NO_VNNI`): the quantized
/// prefill tiles' 512-bit kernels.
pub fn avx512_tiles() -> bool {
    avx512() && byte_dot() == Some(ByteDot::Avx512Vnni)
}

/// An f16 (its bits) as f32, with F16C. `half`'s conversion checks the CPU on every call
/// unless the whole build enables F16C, so a kernel compiled with its own features (the
/// portable build) converts with this instead, inlined.
///
/// # Safety
/// The CPU has F16C; the caller is compiled with it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn f16_bits_to_f32(bits: u16) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits)))) }
}

/// `x` rounded to the nearest f16 (ties to even, as `half::f16::from_f32`) and back, with F16C.
///
/// # Safety
/// As [`f16_bits_to_f32`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn round_to_f16(x: f32) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
            _mm_set_ss(x),
        )))
    }
}

/// Rounds every value of `x` through f16 (as `half::f16::from_f32(v).to_f32()`), eight at a
/// time with F16C where the CPU has it.
pub fn round_through_f16(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2_fma_f16c() {
            // SAFETY: the CPU has AVX2 and F16C (checked above).
            unsafe { round_through_f16_f16c(x) };
            return;
        }
    }
    for v in x {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// # Safety
/// The CPU has AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn round_through_f16_f16c(x: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` holds eight values; the CPU has AVX2 and F16C.
        unsafe {
            let v = _mm256_loadu_ps(c.as_ptr());
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for v in chunks.into_remainder() {
        // SAFETY: the CPU has F16C.
        *v = unsafe { round_to_f16(*v) };
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
