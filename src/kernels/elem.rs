//! The element types the kernels read from memory (f32, and bf16/f16 widened exactly to f32 as
//! they are read): one trait for dense weights and for the KV cache.

use candle_core::CpuStorage;
use half::{bf16, f16};

/// A stored element type, read as f32.
pub trait Elem: Copy + Send + Sync + 'static {
    /// True for f16. llama.cpp rounds the other operand of a product with an f16 tensor to
    /// f16 as well (the queries and the probabilities against an f16 KV cache), so kernels that
    /// reproduce it do the same.
    const IS_F16: bool = false;

    /// True for bf16: ggml's `vec_dot_bf16` ends with another horizontal sum than
    /// `vec_dot_f16` (halves, then lanes 0+2 and 1+3, then those two).
    const IS_BF16: bool = false;

    /// The value as f32 (exact for every type here).
    fn to_f32(self) -> f32;

    /// The values of a CPU tensor's storage, if it holds this type.
    fn of(storage: &CpuStorage) -> Option<&[Self]>;

    /// Eight consecutive values from `p`, as f32 lanes.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C, and `p..p + 8` is readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;

    /// Eight values from `lo` in lanes 0..8 and eight from `hi` in lanes 8..16, as f32: the
    /// same lanes as two [`Elem::load8`], in one 512-bit register.
    ///
    /// # Safety
    /// The CPU has AVX512F besides [`Elem::load8`]'s features (the caller is compiled with
    /// them), and eight values are readable at each of `lo` and `hi`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8x2(lo: *const Self, hi: *const Self) -> std::arch::x86_64::__m512;
}

/// The eight 16-bit values at `lo` then the eight at `hi`, raw bits, in one 256-bit register
/// (for [`Elem::load8x2`] of the half types).
///
/// # Safety
/// As [`Elem::load8x2`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn halves8x2<T>(lo: *const T, hi: *const T) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees sixteen readable bytes at each pointer and AVX2.
    unsafe { _mm256_set_m128i(_mm_loadu_si128(hi.cast()), _mm_loadu_si128(lo.cast())) }
}

impl Elem for f32 {
    fn to_f32(self) -> f32 {
        self
    }

    fn of(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F32(d) => Some(d),
            _ => None,
        }
    }

    /// # Safety
    /// As [`Elem::load8`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller guarantees eight readable values.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }

    /// # Safety
    /// As [`Elem::load8x2`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8x2(lo: *const Self, hi: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees eight readable values at each and AVX512F.
        unsafe {
            let l = _mm512_castps256_ps512(_mm256_loadu_ps(lo));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                _mm512_castps_pd(l),
                _mm256_castps_pd(_mm256_loadu_ps(hi)),
            ))
        }
    }
}

impl Elem for bf16 {
    const IS_BF16: bool = true;

    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }

    fn of(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::BF16(d) => Some(d),
            _ => None,
        }
    }

    /// # Safety
    /// As [`Elem::load8`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // bf16 is the top half of an f32: widen each to 32 bits and shift it up.
        // SAFETY: the caller guarantees eight readable values and AVX2.
        unsafe {
            let h = _mm_loadu_si128(p.cast());
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
        }
    }

    /// # Safety
    /// As [`Elem::load8x2`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8x2(lo: *const Self, hi: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees eight readable values at each and AVX512F.
        unsafe {
            let h = halves8x2(lo, hi);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
}

impl Elem for f16 {
    const IS_F16: bool = true;

    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    fn of(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F16(d) => Some(d),
            _ => None,
        }
    }

    /// # Safety
    /// As [`Elem::load8`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees eight readable values and F16C.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }

    /// # Safety
    /// As [`Elem::load8x2`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8x2(lo: *const Self, hi: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees eight readable values at each and AVX512F.
        unsafe { _mm512_cvtph_ps(halves8x2(lo, hi)) }
    }
}
