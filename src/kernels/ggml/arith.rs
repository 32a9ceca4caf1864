//! Which of llama.cpp's CPU arithmetics a ggml matrix reproduces. llama.cpp 0.3.36 on AVX2, as a
//! user runs it, *repacks* Q4_0, Q4_K and IQ4_NL weights whose row count is a multiple of 8 into
//! interleaved 8×8 layouts (`ggml-cpu/repack.cpp`; off with llama.cpp's `--no-repack`), whose
//! kernels sum in another order than the plain `vec_dot` / tinyBLAS ones. The default here is
//! llama.cpp's default; [`Arithmetic::PLAIN`] is llama.cpp with repacking off.
//!
//! llama.cpp's third product, its tiled K-quant kernel (`ggml-cpu/tiled/`, Q2_K..Q6_K with 8 or
//! more activation rows; off with `GGML_CPU_TILED_MM=0`), is not reproduced: those products
//! always sum as `vec_dot` does (docs/TESTING.md says what that changes).

/// The switches; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arithmetic {
    /// Q4_0 / Q4_K through llama.cpp's repacked 8×8 gemv and gemm (IQ4_NL is not computed).
    pub repack: bool,
}

impl Arithmetic {
    /// llama.cpp's default.
    pub const DEFAULT: Self = Self { repack: true };
    /// Repacking off: the plain products.
    pub const PLAIN: Self = Self { repack: false };
}

impl Default for Arithmetic {
    fn default() -> Self {
        Self::DEFAULT
    }
}
