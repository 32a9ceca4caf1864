//! CPU numerics that round as llama.cpp's CPU backend does: the quantized products
//! ([`ggml`]), dense few-row products ([`dense`]), attention over the KV cache, activations,
//! the vector `exp`, the SIMD feature checks and our own thread pool. Each kernel picks its
//! instructions at run time, so one build is fast on any x86-64 machine.

pub mod activation;
pub mod attention;
pub mod dense;
pub(crate) mod dot;
mod elem;
pub mod ggml;
pub mod pool;
pub mod simd;
pub mod vexp;

pub use elem::Elem;

/// The product's output `(m, n)` row-major, written by several tasks at once, each to its own
/// columns.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    ptr: *mut f32,
    n: usize,
}

// SAFETY: tasks write disjoint columns (see `Out::write`'s contract).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The output `(m, n)` starting at `ptr`.
    pub(crate) fn new(ptr: *mut f32, n: usize) -> Self {
        Self { ptr, n }
    }

    /// Writes `v` at `(i, j)`.
    ///
    /// # Safety
    /// `(i, j)` lies inside the output and no other task writes column `j`.
    #[inline(always)]
    pub(crate) unsafe fn write(self, i: usize, j: usize, v: f32) {
        unsafe { *self.ptr.add(i * self.n + j) = v };
    }
}

/// Deterministic values in [-1, 1) for kernel tests (a multiplicative hash of the index).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8;
            h as f32 / 8388608.0 - 1.0
        })
        .collect()
}
