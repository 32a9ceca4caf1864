//! Whole tensors between f32 and a stored type: the block quantizers and dequantizers picked
//! by type and run over blocks in parallel (each block is independent in every type here, so
//! the bytes do not depend on how the work is split), and ggml's validity check of a tensor's
//! data (no NaN or infinity in its values or block scales).

use super::fp::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
use super::kquants as k;
use super::legacy as l;
use super::types::GgmlType;
use anyhow::{bail, Result};
use rayon::prelude::*;

fn quantize_f32(x: &[f32], out: &mut [u8]) {
    out.copy_from_slice(&x[0].to_le_bytes());
}
fn quantize_f16(x: &[f32], out: &mut [u8]) {
    out.copy_from_slice(&f32_to_f16(x[0]).to_le_bytes());
}
fn quantize_bf16(x: &[f32], out: &mut [u8]) {
    out.copy_from_slice(&f32_to_bf16(x[0]).to_le_bytes());
}
fn dequantize_f32(b: &[u8], y: &mut [f32]) {
    y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}
fn dequantize_f16(b: &[u8], y: &mut [f32]) {
    y[0] = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
}
fn dequantize_bf16(b: &[u8], y: &mut [f32]) {
    y[0] = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
}

/// Elements per parallel task: big enough that a task is not dominated by scheduling.
const TASK: usize = 1 << 16;

/// Runs `block(values, bytes)` over every block of type `ty`, in parallel. Generic over the
/// block function so that the one-element "blocks" of the plain types are inlined.
fn quantize_blocks(
    ty: GgmlType,
    x: &[f32],
    out: &mut [u8],
    block: impl Fn(&[f32], &mut [u8]) + Sync,
) {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let per_task = (TASK / bs).max(1);
    out.par_chunks_mut(per_task * ts)
        .zip(x.par_chunks(per_task * bs))
        .for_each(|(out, x)| {
            for (o, v) in out.chunks_exact_mut(ts).zip(x.chunks_exact(bs)) {
                block(v, o);
            }
        });
}

/// Runs `block(bytes, values)` over every block of type `ty`, in parallel.
fn dequantize_blocks(
    ty: GgmlType,
    b: &[u8],
    y: &mut [f32],
    block: impl Fn(&[u8], &mut [f32]) + Sync,
) {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let per_task = (TASK / bs).max(1);
    y.par_chunks_mut(per_task * bs)
        .zip(b.par_chunks(per_task * ts))
        .for_each(|(y, b)| {
            for (v, blk) in y.chunks_exact_mut(bs).zip(b.chunks_exact(ts)) {
                block(blk, v);
            }
        });
}

/// candle's name of a block type the kernels compute (the callers pass only those).
fn candle_type(ty: GgmlType) -> candle_core::quantized::GgmlDType {
    use candle_core::quantized::GgmlDType as C;
    use GgmlType as T;
    match ty {
        T::Q4_0 => C::Q4_0,
        T::Q4_1 => C::Q4_1,
        T::Q5_0 => C::Q5_0,
        T::Q5_1 => C::Q5_1,
        T::Q8_0 => C::Q8_0,
        T::Q2_K => C::Q2K,
        T::Q3_K => C::Q3K,
        T::Q4_K => C::Q4K,
        T::Q5_K => C::Q5K,
        _ => C::Q6K,
    }
}

/// Whether gen can write tensors of this type.
pub fn can_quantize(ty: GgmlType) -> bool {
    use GgmlType as T;
    matches!(
        ty,
        T::F32
            | T::F16
            | T::BF16
            | T::Q4_0
            | T::Q4_1
            | T::Q5_0
            | T::Q5_1
            | T::Q8_0
            | T::Q2_K
            | T::Q3_K
            | T::Q4_K
            | T::Q5_K
            | T::Q6_K
    )
}

/// Writes `x` as `ty` into `out` (`x.len() / block_size · type_size` bytes).
pub fn quantize(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<()> {
    use GgmlType as T;
    debug_assert_eq!(x.len() / ty.block_size() * ty.type_size(), out.len());
    match ty {
        T::F32 => quantize_blocks(ty, x, out, quantize_f32),
        T::F16 => quantize_blocks(ty, x, out, quantize_f16),
        T::BF16 => quantize_blocks(ty, x, out, quantize_bf16),
        T::Q4_0 => quantize_blocks(ty, x, out, l::quantize_q4_0),
        T::Q4_1 => quantize_blocks(ty, x, out, l::quantize_q4_1),
        T::Q5_0 => quantize_blocks(ty, x, out, l::quantize_q5_0),
        T::Q5_1 => quantize_blocks(ty, x, out, l::quantize_q5_1),
        T::Q8_0 => quantize_blocks(ty, x, out, l::quantize_q8_0),
        T::Q2_K => quantize_blocks(ty, x, out, k::quantize_q2_k),
        T::Q3_K => quantize_blocks(ty, x, out, k::quantize_q3_k),
        T::Q4_K => quantize_blocks(ty, x, out, k::quantize_q4_k),
        T::Q5_K => quantize_blocks(ty, x, out, k::quantize_q5_k),
        T::Q6_K => quantize_blocks(ty, x, out, k::quantize_q6_k),
        _ => bail!("gen cannot write tensors of type {ty}"),
    }
    Ok(())
}

/// Widens `bytes` of type `ty` into `y` as ggml's `to_float` does. As llama.cpp, fails for
/// the plain types that are not floats; gen also has no dequantizer for the IQ, ternary and
/// FP4 types.
pub fn dequantize(ty: GgmlType, bytes: &[u8], y: &mut [f32]) -> Result<()> {
    use GgmlType as T;
    match ty {
        T::F32 => dequantize_blocks(ty, bytes, y, dequantize_f32),
        T::F16 => dequantize_blocks(ty, bytes, y, dequantize_f16),
        T::BF16 => dequantize_blocks(ty, bytes, y, dequantize_bf16),
        T::Q4_0
        | T::Q4_1
        | T::Q5_0
        | T::Q5_1
        | T::Q8_0
        | T::Q2_K
        | T::Q3_K
        | T::Q4_K
        | T::Q5_K
        | T::Q6_K => {
            let dtype = candle_type(ty);
            dequantize_blocks(ty, bytes, y, |b, v| {
                let known = crate::kernels::ggml::dequantize(dtype, b, v);
                debug_assert!(known, "{ty} is a type the kernels compute");
            })
        }
        _ if ty.is_quantized() => {
            bail!("requantizing from type {ty} is not supported (gen has no dequantizer for it)")
        }
        _ => bail!("cannot convert a tensor of type {ty} to floats"),
    }
    Ok(())
}

/// The index of the first of `items` (each `size` bytes of `bytes`) for which `bad` holds,
/// searched in parallel.
fn first_bad(bytes: &[u8], size: usize, bad: impl Fn(&[u8]) -> bool + Sync) -> Option<usize> {
    let per_task = (TASK * 4 / size).max(1);
    bytes
        .par_chunks(per_task * size)
        .enumerate()
        .filter_map(|(i, chunk)| {
            chunk
                .chunks_exact(size)
                .position(&bad)
                .map(|p| i * per_task + p)
        })
        .min()
}

/// The first invalid value of a tensor's data, as ggml's `ggml_validate_row_data` finds
/// them: a NaN or infinity among plain values, or in the f16 scales of a block type (types it
/// does not check pass). Returns the block (element, for plain types) index.
pub fn first_invalid(ty: GgmlType, bytes: &[u8]) -> Option<usize> {
    use GgmlType as T;
    let f16_bad = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) & 0x7c00 == 0x7c00;
    // Offsets of the f16 scales ggml checks in each block.
    let scales: &[usize] = match ty {
        T::F32 => {
            return first_bad(bytes, 4, |b| {
                !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()
            })
        }
        T::F16 => return first_bad(bytes, 2, |b| f16_bad(b, 0)),
        T::BF16 => {
            return first_bad(bytes, 2, |b| {
                u16::from_le_bytes([b[0], b[1]]) & 0x7f80 == 0x7f80
            })
        }
        T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL => &[0],
        T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K => &[0, 2],
        T::Q2_K => &[80, 82],
        T::Q3_K => &[108],
        T::Q6_K => &[208],
        _ => return None,
    };
    first_bad(bytes, ty.type_size(), |b| {
        scales.iter().any(|&at| f16_bad(b, at))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_type_is_read_back() {
        use GgmlType as T;
        let x: Vec<f32> = (0..1024)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0)
            .collect();
        for ty in [
            T::F32,
            T::F16,
            T::BF16,
            T::Q4_0,
            T::Q4_1,
            T::Q5_0,
            T::Q5_1,
            T::Q8_0,
            T::Q2_K,
            T::Q3_K,
            T::Q4_K,
            T::Q5_K,
            T::Q6_K,
        ] {
            let mut bytes = vec![0u8; ty.row_size(x.len())];
            quantize(ty, &x, &mut bytes).unwrap();
            let mut y = vec![0f32; x.len()];
            dequantize(ty, &bytes, &mut y).unwrap();
            let worst = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst < 0.5, "{ty}: {worst}");
            assert_eq!(first_invalid(ty, &bytes), None, "{ty}");
        }
    }

    #[test]
    fn nan_and_infinite_values_are_found() {
        let mut x = vec![1.0f32; 64];
        x[40] = f32::NAN;
        let mut f16 = vec![0u8; 128];
        quantize(GgmlType::F16, &x, &mut f16).unwrap();
        assert_eq!(first_invalid(GgmlType::F16, &f16), Some(40));
        x[40] = f32::INFINITY;
        let mut q8 = vec![0u8; 68];
        quantize(GgmlType::Q8_0, &x, &mut q8).unwrap();
        assert_eq!(first_invalid(GgmlType::Q8_0, &q8), Some(1));
    }

    #[test]
    fn unsupported_types_are_errors() {
        let mut y = [0f32; 256];
        let e = dequantize(GgmlType::IQ2_XS, &[0u8; 74], &mut y).unwrap_err();
        assert!(e.to_string().contains("iq2_xs"), "{e}");
        assert!(dequantize(GgmlType::I32, &[0u8; 4], &mut y[..1]).is_err());
    }
}
