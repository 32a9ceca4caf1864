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
