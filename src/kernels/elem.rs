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
}
