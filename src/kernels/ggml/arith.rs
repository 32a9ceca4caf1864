//! Which of llama.cpp's CPU arithmetics a ggml matrix reproduces. llama.cpp 0.3.36 on AVX2, as a
//! user runs it, *repacks* Q4_0, Q4_K and IQ4_NL weights whose row count is a multiple of 8 into
//! interleaved 8×8 layouts (`ggml-cpu/repack.cpp`; off with llama.cpp's `--no-repack`), and
//! multiplies the other K-quants by 8 or more activation rows with its tiled kernel
//! (`ggml-cpu/tiled/`; off with `GGML_CPU_TILED_MM=0`). Each changes the order of the float
//! sums, so each is a switch here: the default is llama.cpp's default, [`Arithmetic::PLAIN`] is
//! llama.cpp with both off (the plain `vec_dot` / tinyBLAS products).

/// The switches; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arithmetic {
    /// Q4_0 / Q4_K / IQ4_NL through llama.cpp's repacked 8×8 gemv and gemm.
    pub repack: bool,
    /// Q2_K..Q6_K products of 8 or more rows through llama.cpp's tiled kernel.
    pub tiled: bool,
}

impl Arithmetic {
    /// llama.cpp's defaults.
    pub const DEFAULT: Self = Self {
        repack: true,
        tiled: true,
    };
    /// Both off: the plain products.
    pub const PLAIN: Self = Self {
        repack: false,
        tiled: false,
    };
}

impl Default for Arithmetic {
    fn default() -> Self {
        Self::DEFAULT
    }
}
