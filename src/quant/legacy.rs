//! The 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): one block at a time, quantized
//! as ggml's `quantize_row_*_ref` (what llama.cpp uses without an importance matrix) and
//! widened as its `dequantize_row_*`. Plain f32 arithmetic in ggml's order: ggml-base is
//! built without fused multiply-adds, so no `mul_add` here.
//!
//! Block layouts (little-endian): Q4_0 `d: f16, qs: [u8; 16]`; Q4_1 `d, m: f16, qs: [u8; 16]`;
//! Q5_0 `d: f16, qh: u32, qs: [u8; 16]`; Q5_1 `d, m: f16, qh: u32, qs: [u8; 16]`;
//! Q8_0 `d: f16, qs: [i8; 32]`. Nibble j holds element j (low) and j + 16 (high).

use super::fp::f32_to_f16;

/// Elements per block.
pub const QK: usize = 32;

/// C's `(int8_t)` / `(uint8_t)` of a float as x86 compiles it (truncate toward zero to 32
/// bits, keep the low byte); Rust's `as u8` would saturate instead.
fn trunc_low_byte(v: f32) -> u8 {
    (v as i32) as u8
}

/// The element of largest magnitude, signed (the first one on ties), as Q4_0 and Q5_0 find it.
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// The smallest and largest element, from ±f32::MAX as ggml starts.
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// The reciprocal of a scale, 0 for a zero scale (C's `d ? 1.0f/d : 0.0f`; NaN counts as
/// non-zero there as here).
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Quantizes 32 values into an 18-byte Q4_0 block.
pub fn quantize_q4_0(x: &[f32], out: &mut [u8]) {
    let d = signed_absmax(x) / -8.0;
    let id = inverse(d);
    out[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for j in 0..QK / 2 {
        let lo = trunc_low_byte(x[j] * id + 8.5) as i8;
        let hi = trunc_low_byte(x[j + QK / 2] * id + 8.5) as i8;
        let lo = lo.min(15) as u8;
        let hi = hi.min(15) as u8;
        out[2 + j] = lo | (hi << 4);
    }
}

/// Quantizes 32 values into a 20-byte Q4_1 block.
pub fn quantize_q4_1(x: &[f32], out: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    out[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    out[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
    for j in 0..QK / 2 {
        let lo = trunc_low_byte((x[j] - min) * id + 0.5) as i8;
        let hi = trunc_low_byte((x[j + QK / 2] - min) * id + 0.5) as i8;
        out[4 + j] = (lo.min(15) as u8) | ((hi.min(15) as u8) << 4);
    }
}

/// Quantizes 32 values into a 22-byte Q5_0 block.
pub fn quantize_q5_0(x: &[f32], out: &mut [u8]) {
    let d = signed_absmax(x) / -16.0;
    let id = inverse(d);
    out[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let lo = (trunc_low_byte(x[j] * id + 16.5) as i8).min(31) as u8;
        let hi = (trunc_low_byte(x[j + QK / 2] * id + 16.5) as i8).min(31) as u8;
        out[6 + j] = (lo & 0x0F) | ((hi & 0x0F) << 4);
        qh |= (((lo & 0x10) >> 4) as u32) << j;
        qh |= (((hi & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    out[2..6].copy_from_slice(&qh.to_le_bytes());
}

/// Quantizes 32 values into a 24-byte Q5_1 block.
pub fn quantize_q5_1(x: &[f32], out: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    out[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    out[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        // No clamp to 31 here, unlike Q5_0: ggml's reference has none.
        let lo = trunc_low_byte((x[j] - min) * id + 0.5);
        let hi = trunc_low_byte((x[j + QK / 2] - min) * id + 0.5);
        out[8 + j] = (lo & 0x0F) | ((hi & 0x0F) << 4);
        qh |= (((lo & 0x10) >> 4) as u32) << j;
        qh |= (((hi & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    out[4..8].copy_from_slice(&qh.to_le_bytes());
}

/// Quantizes 32 values into a 34-byte Q8_0 block.
pub fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    // C's MAX(a, b) is `a > b ? a : b`: a NaN wins over the running maximum, as here.
    let amax = x
        .iter()
        .fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() });
    let d = amax / 127.0;
    let id = inverse(d);
    out[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for j in 0..QK {
        // roundf rounds halves away from zero, as f32::round does.
        out[2 + j] = (x[j] * id).round() as i32 as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::fp::f16_at;
    use candle_core::quantized::GgmlDType;

    /// The kernels' dequantizer (the one gen has) for one block of `dtype`.
    fn widen(dtype: GgmlDType) -> impl Fn(&[u8], &mut [f32]) {
        move |b, y| assert!(crate::kernels::ggml::dequantize(dtype, b, y))
    }

    fn sample(seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..QK)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Quantize then widen stays within half a step of every value, a whole step for Q4_0 and
    /// Q5_0 (their top level is clamped: values opposite the largest one lose up to a step).
    #[test]
    fn round_trips_within_a_step() {
        type Q = fn(&[f32], &mut [u8]);
        let cases: [(Q, GgmlDType, usize, f32); 5] = [
            (quantize_q4_0, GgmlDType::Q4_0, 18, 2.0 / 8.0),
            (quantize_q4_1, GgmlDType::Q4_1, 20, 2.0 / 15.0),
            (quantize_q5_0, GgmlDType::Q5_0, 22, 2.0 / 16.0),
            (quantize_q5_1, GgmlDType::Q5_1, 24, 2.0 / 31.0),
            (quantize_q8_0, GgmlDType::Q8_0, 34, 1.0 / 127.0),
        ];
        for seed in 0..50 {
            let x = sample(seed);
            for (q, d, size, step) in cases {
                let mut block = vec![0u8; size];
                q(&x, &mut block);
                let mut y = vec![0f32; QK];
                widen(d)(&block, &mut y);
                for (a, b) in x.iter().zip(&y) {
                    assert!(
                        (a - b).abs() <= step * 0.5 + 2e-3,
                        "{a} vs {b} (size {size})"
                    );
                }
            }
        }
    }

    /// The largest-magnitude value maps to level -8 (Q4_0's d = max / -8), exactly.
    #[test]
    fn q4_0_puts_the_extreme_value_on_a_level() {
        let mut x = vec![0.25f32; QK];
        x[3] = -2.0;
        let mut block = [0u8; 18];
        quantize_q4_0(&x, &mut block);
        let mut y = [0f32; QK];
        widen(GgmlDType::Q4_0)(&block, &mut y);
        assert_eq!(y[3], -2.0);
        assert_eq!(f16_at(&block, 0), 0.25);
    }
}
