//! The 256-element super-block types (Q2_K … Q6_K): one super-block at a time, quantized as
//! ggml's `quantize_row_q*_K_ref` (what `quantize_q*_K` runs without an importance matrix) and
//! widened as its `dequantize_row_q*_K`. The scale searches (`make_qx_quants`,
//! `make_q3_quants`, `make_qkx2_quants`) follow ggml's operation order exactly: ggml-base is
//! compiled without fused multiply-adds, so plain f32 arithmetic in the same order gives the
//! same bits (no `mul_add`, no reassociated sums).
//!
//! Block layouts (byte offsets; f16 little-endian):
//! - Q2_K, 84: scales `[u8; 16]` (low nibble scale, high nibble min) @0, qs `[u8; 64]` @16,
//!   d @80, dmin @82
//! - Q3_K, 110: hmask `[u8; 32]` @0, qs `[u8; 64]` @32, scales (6-bit, packed) `[u8; 12]` @96,
//!   d @108
//! - Q4_K, 144: d @0, dmin @2, scales and mins (6-bit, packed) `[u8; 12]` @4, qs `[u8; 128]` @16
//! - Q5_K, 176: d @0, dmin @2, scales `[u8; 12]` @4, qh `[u8; 32]` @16, qs `[u8; 128]` @48
//! - Q6_K, 210: ql `[u8; 128]` @0, qh `[u8; 64]` @128, scales `[i8; 16]` @192, d @208

use super::fp::{f16_at, f32_to_f16};

/// Elements per super-block.
pub const QK_K: usize = 256;

/// Below this, a group counts as all zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

// ggml's `nearest_int` (ties to even through the f32 mantissa), the one the Q8_K activation
// quantizer uses too.
use crate::kernels::ggml::kquant::nearest_int;

/// The value of largest magnitude (the first of equal ones) and that magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Symmetric levels in `[-nmax, nmax)`, weights x² (ggml's `make_qx_quants` with
/// `rmse_type = 1` and no importance weights): the scale is refined over 18 nearby inverse
/// scales, keeping the one with the best weighted fit. `l` gets the levels offset by `nmax`.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let mut iscale = (-nmax) as f32 / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (li, &v) in l.iter_mut().zip(x) {
        let q = level(iscale, v);
        *li = (q + nmax) as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let q = level(iscale, v);
            let w = v * v;
            sumlx += w * v * q as f32;
            suml2 += w * q as f32 * q as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l.iter_mut().zip(x) {
                *li = (nmax + level(iscale, v)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's symmetric levels in `[-nmax, nmax)` with weights x² (ggml's `make_q3_quants` with
/// `do_rmse`): start from the max-based scale, then move single levels while that improves
/// the weighted fit (at most 5 sweeps). `l` gets the levels offset by `nmax`.
fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = (-nmax) as f32 / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (li, &v) in l.iter_mut().zip(x) {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *li = q as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for (li, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let old = *li as f32;
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *li as i32 {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for li in l.iter_mut() {
        *li += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The search `make_qkx2_quants` runs for one block type: levels `0..=nmax`, inverse scales
/// `(nmax + rmin + rdelta·k) / (max - min)` for k in `0..=nstep`, errors absolute
/// (`use_mad`) or squared.
struct Qkx2 {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
}

const Q2K_SEARCH: Qkx2 = Qkx2 {
    nmax: 3,
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
    use_mad: true,
};
const Q4K_SEARCH: Qkx2 = Qkx2 {
    nmax: 15,
    rmin: -1.0,
    rdelta: 0.1,
    nstep: 20,
    use_mad: false,
};
const Q5K_SEARCH: Qkx2 = Qkx2 {
    nmax: 31,
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
    use_mad: false,
};

/// Asymmetric levels (scale and min) fitted by weighted least squares over a range of inverse
/// scales (ggml's `make_qkx2_quants`); returns `(scale, -min)` with min ≤ 0, and the levels
/// in `l`.
fn make_qkx2_quants(x: &[f32], weights: &[f32], l: &mut [u8], p: &Qkx2) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let err = |diff: f32| if p.use_mad { diff.abs() } else { diff * diff };
    let nmax = p.nmax;
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if p.nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    let laux = &mut laux[..n];
    for is in 0..=p.nstep {
        iscale = (p.rmin + p.rdelta * is as f32 + nmax as f32) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let w = weights[i];
            let q = q as f32;
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Scale and min `j` (0..8) of Q4_K/Q5_K's 12 packed 6-bit values.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Packs four 2-bit levels per byte as Q2_K and Q3_K store them: byte `j/4 + l` of each
/// 128-element half holds elements `j + l`, `+32`, `+64`, `+96`.
fn pack_2bit(l: &[u8], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for i in 0..32 {
            qs[j / 4 + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

/// Quantizes 256 values into an 84-byte Q2_K block.
pub fn quantize_q2_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        let mut weights = [0f32; 16];
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = v.abs();
        }
        let (scale, min) = make_qkx2_quants(xs, &weights, &mut l[16 * j..16 * j + 16], &Q2K_SEARCH);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    const Q4SCALE: f32 = 15.0;
    let (sc, rest) = out.split_at_mut(16);
    let (qs, dd) = rest.split_at_mut(64);
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for j in 0..16 {
            sc[j] = nearest_int(iscale * scales[j]) as u8;
        }
        dd[0..2].copy_from_slice(&f32_to_f16(max_scale / Q4SCALE).to_le_bytes());
    } else {
        sc.fill(0);
        dd[0..2].copy_from_slice(&f32_to_f16(0.0).to_le_bytes());
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for j in 0..16 {
            sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        dd[2..4].copy_from_slice(&f32_to_f16(max_min / Q4SCALE).to_le_bytes());
    } else {
        dd[2..4].copy_from_slice(&f32_to_f16(0.0).to_le_bytes());
    }
    let d_all = f16_at(dd, 0);
    let dmin_all = f16_at(dd, 2);
    for j in 0..16 {
        let d = d_all * (sc[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * (sc[j] >> 4) as f32;
        for i in 0..16 {
            l[16 * j + i] = nearest_int((x[16 * j + i] + dm) / d).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&l, qs);
}

/// Quantizes 256 values into a 110-byte Q3_K block.
pub fn quantize_q3_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut amax = 0.0f32;
    for j in 0..16 {
        scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }
    let (hmask, rest) = out.split_at_mut(32);
    let (qs, rest) = rest.split_at_mut(64);
    let (sc, dd) = rest.split_at_mut(12);
    sc.fill(0);
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..16 {
            // ggml keeps this level in an int8_t before clamping: the wrap is part of it.
            let q = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
            if j < 8 {
                sc[j] = (q & 0xF) as u8;
            } else {
                sc[j - 8] |= ((q & 0xF) << 4) as u8;
            }
            sc[j % 4 + 8] |= ((q >> 4) << (2 * (j / 4))) as u8;
        }
        dd.copy_from_slice(&f32_to_f16(1.0 / iscale).to_le_bytes());
    } else {
        dd.copy_from_slice(&f32_to_f16(0.0).to_le_bytes());
    }
    let d_all = f16_at(dd, 0);
    for j in 0..16 {
        let low = if j < 8 { sc[j] & 0xF } else { sc[j - 8] >> 4 };
        let s = (low | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8 - 32;
        let d = d_all * s as f32;
        if d == 0.0 {
            continue;
        }
        for i in 0..16 {
            l[16 * j + i] = nearest_int(x[16 * j + i] / d).clamp(-4, 3) as i8 + 4;
        }
    }
    // The high bit of element j goes to bit j / 32 of hmask[j % 32].
    hmask.fill(0);
    let mut levels = [0u8; QK_K];
    for (j, (&q, lv)) in l.iter().zip(levels.iter_mut()).enumerate() {
        let mut q = q as u8;
        if q > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            q -= 4;
        }
        *lv = q;
    }
    pack_2bit(&levels, qs);
}

/// The scales, mins and levels Q4_K and Q5_K share: eight 32-element groups fitted with
/// weights `sqrt(mean x²) + |x|`, their scales and mins quantized to 6 bits against the
/// super-block's `d` and `dmin` (written at `out[0..16]`), then the levels refitted to the
/// quantized scales.
fn quantize_scales_and_levels(x: &[f32], out: &mut [u8], search: &Qkx2, l: &mut [u8; QK_K]) {
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut weights = [0f32; 32];
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(xs, &weights, &mut l[32 * j..32 * j + 32], search);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let sc = &mut out[4..16];
    for j in 0..8 {
        // Stored in a uint8_t before the clamp, as ggml does.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    out[0..2].copy_from_slice(&f32_to_f16(max_scale / 63.0).to_le_bytes());
    out[2..4].copy_from_slice(&f32_to_f16(max_min / 63.0).to_le_bytes());
    let d_all = f16_at(out, 0);
    let dmin_all = f16_at(out, 2);
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, &out[4..16]);
        let d = d_all * s as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / d).clamp(0, search.nmax) as u8;
        }
    }
}

/// Quantizes 256 values into a 144-byte Q4_K block.
pub fn quantize_q4_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; QK_K];
    quantize_scales_and_levels(x, out, &Q4K_SEARCH, &mut l);
    let qs = &mut out[16..144];
    for (n, j) in (0..QK_K).step_by(64).enumerate() {
        for i in 0..32 {
            qs[32 * n + i] = l[j + i] | (l[j + i + 32] << 4);
        }
    }
}

/// Quantizes 256 values into a 176-byte Q5_K block.
pub fn quantize_q5_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; QK_K];
    quantize_scales_and_levels(x, out, &Q5K_SEARCH, &mut l);
    let (qh, ql) = out[16..176].split_at_mut(32);
    qh.fill(0);
    let (mut m1, mut m2) = (1u8, 2u8);
    for (k, n) in (0..QK_K).step_by(64).enumerate() {
        for j in 0..32 {
            let mut l1 = l[n + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= m1;
            }
            let mut l2 = l[n + j + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[32 * k + j] = l1 | (l2 << 4);
        }
        m1 <<= 2;
        m2 <<= 2;
    }
}

/// Quantizes 256 values into a 210-byte Q6_K block.
pub fn quantize_q6_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for ib in 0..16 {
        let scale = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        scales[ib] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        out.fill(0);
        return;
    }
    let (ql, rest) = out.split_at_mut(128);
    let (qh, rest) = rest.split_at_mut(64);
    let (sc, dd) = rest.split_at_mut(16);
    let iscale = -128.0 / max_scale;
    dd.copy_from_slice(&f32_to_f16(1.0 / iscale).to_le_bytes());
    for ib in 0..16 {
        sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    let d_all = f16_at(dd, 0);
    for j in 0..16 {
        let d = d_all * (sc[j] as i8) as f32;
        if d == 0.0 {
            continue;
        }
        for i in 0..16 {
            l[16 * j + i] = nearest_int(x[16 * j + i] / d).clamp(-32, 31) as i8 + 32;
        }
    }
    let l: [u8; QK_K] = l.map(|v| v as u8);
    for (k, j) in (0..QK_K).step_by(128).enumerate() {
        let ql = &mut ql[64 * k..64 * k + 64];
        let qh = &mut qh[32 * k..32 * k + 32];
        for i in 0..32 {
            let q1 = l[j + i] & 0xF;
            let q2 = l[j + i + 32] & 0xF;
            let q3 = l[j + i + 64] & 0xF;
            let q4 = l[j + i + 96] & 0xF;
            ql[i] = q1 | (q3 << 4);
            ql[i + 32] = q2 | (q4 << 4);
            qh[i] = (l[j + i] >> 4)
                | ((l[j + i + 32] >> 4) << 2)
                | ((l[j + i + 64] >> 4) << 4)
                | ((l[j + i + 96] >> 4) << 6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: u32, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * 0.05
            })
            .collect()
    }

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }

    /// Each type's round trip stays within a bound its bit width allows, relative to the block's
    /// range; an all-zero block stays zero.
    #[test]
    fn round_trips_are_close() {
        type Q = fn(&[f32], &mut [u8]);
        use candle_core::quantized::GgmlDType as C;
        let cases: [(Q, C, usize, f32); 5] = [
            (quantize_q2_k, C::Q2K, 84, 0.45),
            (quantize_q3_k, C::Q3K, 110, 0.25),
            (quantize_q4_k, C::Q4K, 144, 0.1),
            (quantize_q5_k, C::Q5K, 176, 0.05),
            (quantize_q6_k, C::Q6K, 210, 0.03),
        ];
        // The kernels' dequantizer, the one gen has.
        let d = |dtype: C, b: &[u8], y: &mut [f32]| {
            assert!(crate::kernels::ggml::dequantize(dtype, b, y))
        };
        for seed in 0..20 {
            let x = sample(seed, QK_K);
            let range = 0.1f32;
            for (q, size_type, size, tol) in cases {
                let mut block = vec![0u8; size];
                q(&x, &mut block);
                let mut y = vec![0f32; QK_K];
                d(size_type, &block, &mut y);
                let worst = x
                    .iter()
                    .zip(&y)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(worst <= tol * range, "size {size}: worst error {worst}");

                let mut zeros = vec![1u8; size];
                q(&[0.0; QK_K], &mut zeros);
                d(size_type, &zeros, &mut y);
                assert!(y.iter().all(|&v| v == 0.0), "size {size}: zeros");
            }
        }
    }
}
