//! The MLP's activation: SwiGLU, `silu(gate) * up` with `silu(x) = x / (1 + exp(-x))`, or
//! GeGLU (Gemma), `gelu_tanh(gate) * up`.
//!
//! On the CPU with AVX2 and FMA, eight lanes at a time with ggml's vector `expf`
//! ([`crate::kernels::vexp`]), so the activations that the next quantized product rounds are
//! the ones llama.cpp computes; elsewhere, and for a tail shorter than eight, with the C
//! library's `expf`, as ggml's scalar path. Other devices use candle's ops.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

/// `silu(gate) * up`, elementwise; both of one shape.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        bail!(
            "swiglu: gate {:?} and up {:?} differ in shape",
            gate.dims(),
            up.dims()
        );
    }
    if !gate.device().is_cpu() || gate.dtype() != DType::F32 || up.dtype() != DType::F32 {
        return Ok((candle_nn::ops::silu(gate)? * up)?);
    }
    let g = gate.flatten_all()?.to_vec1::<f32>()?;
    let u = up.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; g.len()];
    swiglu_slices(&g, &u, &mut out);
    Ok(Tensor::from_vec(out, gate.dims(), gate.device())?)
}

/// GELU with the tanh approximation, as written by ggml and PyTorch (`gelu_pytorch_tanh`).
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// ggml's CPU GELU (`GGML_GELU_FP16`): below -10 it is 0 and from 10 on the identity;
/// between, `gelu_tanh` of `x` rounded to f16, itself rounded to f16 (a table of every f16
/// input in ggml). The next quantized product rounds these values, so matching them keeps
/// llama.cpp's roundings.
fn gelu_ggml(x: f32) -> f32 {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<half::f16>> = OnceLock::new();
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let table = TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| half::f16::from_f32(gelu_tanh(half::f16::from_bits(bits).to_f32())))
            .collect()
    });
    table[usize::from(half::f16::from_f32(x).to_bits())].to_f32()
}

/// `gelu_tanh(gate) * up`, elementwise; both of one shape. With `ggml_rounding` (GGUF
/// weights) the GELU is ggml's f16 table ([`gelu_ggml`]), otherwise the f32 formula as
/// transformers computes it.
pub fn geglu_tanh(gate: &Tensor, up: &Tensor, ggml_rounding: bool) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        bail!(
            "geglu: gate {:?} and up {:?} differ in shape",
            gate.dims(),
            up.dims()
        );
    }
    if !gate.device().is_cpu() {
        return Ok((gate.gelu()? * up)?);
    }
    let g = gate.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let u = up.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let gelu = if ggml_rounding { gelu_ggml } else { gelu_tanh };
    let out: Vec<f32> = g.iter().zip(&u).map(|(&x, &y)| gelu(x) * y).collect();
    Ok(Tensor::from_vec(out, gate.dims(), gate.device())?)
}

fn swiglu_slices(g: &[f32], u: &[f32], out: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::simd::avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            done = unsafe { avx2::swiglu(g, u, out) };
        }
    }
    for ((o, &x), &y) in out[done..].iter_mut().zip(&g[done..]).zip(&u[done..]) {
        *o = x / (1.0 + (-x).exp()) * y;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::kernels::vexp::avx2::exp;
    use std::arch::x86_64::*;

    /// `silu(g) * u` for the first multiple of eight elements; returns how many it did.
    #[target_feature(enable = "avx2,fma")]
    pub fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) -> usize {
        let n = g.len().min(u.len()).min(out.len()) / 8 * 8;
        for ((o, x), y) in out[..n]
            .chunks_exact_mut(8)
            .zip(g.chunks_exact(8))
            .zip(u.chunks_exact(8))
        {
            // SAFETY: each chunk holds exactly eight f32s.
            unsafe {
                let x = _mm256_loadu_ps(x.as_ptr());
                let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
                let silu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
                _mm256_storeu_ps(
                    o.as_mut_ptr(),
                    _mm256_mul_ps(silu, _mm256_loadu_ps(y.as_ptr())),
                );
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// SwiGLU on the CPU agrees with candle's silu times up (libm's expf) to a few ulp, tail
    /// elements included.
    #[test]
    fn swiglu_matches_silu_times_up() {
        let n = 3 * 37; // not a multiple of eight
        let g: Vec<f32> = crate::kernels::test_values(n, 3)
            .iter()
            .map(|v| v * 12.0)
            .collect();
        let u = crate::kernels::test_values(n, 9);
        let gt = Tensor::from_vec(g, (3, 37), &Device::Cpu).unwrap();
        let ut = Tensor::from_vec(u, (3, 37), &Device::Cpu).unwrap();
        let got = swiglu(&gt, &ut).unwrap().flatten_all().unwrap();
        let want = (candle_nn::ops::silu(&gt).unwrap() * &ut)
            .unwrap()
            .flatten_all()
            .unwrap();
        for (a, b) in got
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .zip(want.to_vec1::<f32>().unwrap())
        {
            assert!(
                (a - b).abs() <= 4.0 * f32::EPSILON * b.abs().max(1e-6),
                "{a} vs {b}"
            );
        }
        assert!(swiglu(&gt, &ut.narrow(1, 0, 8).unwrap()).is_err());
    }

    /// GeGLU: the f32 formula agrees with candle's tanh GELU; ggml's table is the formula on
    /// f16-rounded values, rounded to f16, and saturates outside ±10.
    #[test]
    fn geglu_formula_and_ggml_table() {
        let n = 2 * 41;
        let g: Vec<f32> = crate::kernels::test_values(n, 4)
            .iter()
            .map(|v| v * 14.0)
            .collect();
        let u = crate::kernels::test_values(n, 5);
        let gt = Tensor::from_vec(g.clone(), (2, 41), &Device::Cpu).unwrap();
        let ut = Tensor::from_vec(u.clone(), (2, 41), &Device::Cpu).unwrap();
        let got = geglu_tanh(&gt, &ut, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want = (gt.gelu().unwrap() * &ut)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
        let table = geglu_tanh(&gt, &ut, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for ((&x, &y), &t) in g.iter().zip(&u).zip(&table) {
            let want = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x * y
            } else {
                let r = half::f16::from_f32(x).to_f32();
                half::f16::from_f32(gelu_tanh(r)).to_f32() * y
            };
            assert_eq!(t, want, "x = {x}");
        }
        assert!(g.iter().any(|&x| x >= 10.0) && g.iter().any(|&x| x <= -10.0));
        assert!(geglu_tanh(&gt, &ut.narrow(1, 0, 8).unwrap(), true).is_err());
    }
}
