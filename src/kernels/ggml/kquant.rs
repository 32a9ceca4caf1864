//! ggml's K-quant weight blocks (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: 256 weights per block, with
//! sub-block scales) dotted with activations quantized to Q8_K, computed the way ggml's CPU
//! backend computes them: activations quantized by `quantize_row_q8_K_ref` ([`quantize_q8k`]),
//! products by the AVX2 `ggml_vec_dot_q*_K_q8_K` kernels ([`dot`], [`dot_rows`]; the SIMD code
//! is in `kquant/avx2.rs`), and `dequantize_row_q*_K` for embedding lookups
//! ([`dequantize_row`]).
//!
//! On x86-64 with AVX2, FMA and F16C the products are ggml's bit for bit. That takes more than
//! the same sum: every AVX2 kernel gathers its integer products into eight int32 lanes (lane
//! `k` holds the weights at `p % 32` in `4k..4k + 4`), converts each lane to float and
//! multiply-adds it into its own accumulator block by block, so the lane a product lands in,
//! the order of the float scale products and the final reduction all decide the last bits.
//! One detail is in ggml's build, not its source: compiled with `-std=gnu11 -march=native`
//! (so `-ffp-contract=fast`), Q5_K's scalar `summs += dmin * sum` is one fused multiply-add,
//! and so it is here. `tests/oracle/kquant_dots.json` holds ggml's own results on fixed inputs
//! (its script beside it), which the tests match bit for bit. Without AVX2 the portable
//! kernels follow ggml's `_generic` scalar code, whose results differ from the AVX2 ones in
//! the last bits, as llama.cpp's own do between the two builds.

use candle_core::quantized::GgmlDType;
use half::f16;

/// Weights per K-quant block and activations per Q8_K block (ggml's `QK_K`).
pub(crate) const QK_K: usize = 256;

/// One block of 256 activations quantized to 8 bits (ggml's `block_q8_K`): `x ≈ d * qs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Q8KBlock {
    d: f32,
    qs: [i8; QK_K],
    /// The sums of each 16 consecutive `qs`, which the kernels dot with the weights' mins
    /// (and Q6_K with its scales, for its offset of 32) instead of touching every weight.
    bsums: [i16; QK_K / 16],
}

impl Q8KBlock {
    /// An all-zero block, to allocate rows of blocks before quantizing into them.
    pub(crate) const ZERO: Self = Self {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };
}

/// Quantizes `x` (`out.len()` blocks of 256 values) to Q8_K, exactly as ggml's
/// `quantize_row_q8_K_ref` (which ggml's x86 backend uses as is): per block, the value of
/// largest magnitude `max` (the first one if several tie, its sign kept) gives
/// `iscale = -127 / max`, each value becomes `nearest_int(iscale * x)` capped at 127, and
/// `d = 1 / iscale`. So `d` has the sign opposite to `max`, and `max` itself quantizes to
/// -127. An all-zero block gets `d = 0` and zeros.
///
/// # Panics
/// If `x` does not hold exactly `out.len()` blocks.
pub(crate) fn quantize_q8k(x: &[f32], out: &mut [Q8KBlock]) {
    assert_eq!(
        x.len(),
        out.len() * QK_K,
        "quantize_q8k: {} values for {} blocks of {QK_K}",
        x.len(),
        out.len()
    );
    for (x, o) in x.chunks_exact(QK_K).zip(out) {
        *o = quantize_block(x);
    }
}

fn quantize_block(x: &[f32]) -> Q8KBlock {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        // Strictly greater: the first of equal magnitudes decides the sign.
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let mut b = Q8KBlock::ZERO;
    if amax == 0.0 {
        return b;
    }
    // -127 rather than -128 so that no value reaches -128 (ggml made the change for IQ2_XXS's
    // AVX code; it holds for every K-quant).
    let iscale = -127.0 / max;
    for (q, &v) in b.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
        *s = q.iter().map(|&q| i16::from(q)).sum();
    }
    b.d = 1.0 / iscale;
    b
}

/// ggml's `nearest_int`: adding 1.5·2²³ leaves the value rounded half to even in the low
/// mantissa bits, for |v| < 2²². (The same as `round_ties_even` in that range; written as
/// ggml writes it so that no edge case can differ.)
pub(crate) fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// The K-quant block types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KQuant {
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl KQuant {
    /// The K-quant type of `dtype`; `None` for other types.
    pub(crate) fn from_dtype(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q2K => Self::Q2K,
            GgmlDType::Q3K => Self::Q3K,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q5K => Self::Q5K,
            GgmlDType::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    /// Bytes per block of 256 weights. The layouts (ggml-common.h), offsets in bytes:
    /// - Q2_K: scales (4-bit scale | 4-bit min << 4) × 16 @0, 2-bit quants @16, d @80, dmin @82
    /// - Q3_K: high bits @0, 2-bit quants @32, 6-bit scales packed in 12 bytes @96, d @108
    /// - Q4_K: d @0, dmin @2, 6-bit scales and mins packed in 12 bytes @4, nibbles @16
    /// - Q5_K: as Q4_K, then the fifth bits @16 and the nibbles @48
    /// - Q6_K: low nibbles @0, high 2 bits @128, i8 scales × 16 @192, d @208
    ///
    /// `d` and `dmin` are little-endian f16.
    pub(crate) const fn block_bytes(self) -> usize {
        match self {
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Whether the weights are `d·scale·q - dmin·min` (an offset per sub-block) rather than
    /// `d·scale·q`.
    fn has_mins(self) -> bool {
        matches!(self, Self::Q2K | Self::Q4K | Self::Q5K)
    }
}

/// The dot product of one weight row (`a.len()` raw ggml blocks of `kind`, at any alignment:
/// the bytes may lie anywhere in a memory-mapped file) with one row of Q8_K activations.
/// With AVX2, FMA and F16C it is ggml's AVX2 result bit for bit; otherwise ggml's scalar one.
///
/// # Panics
/// If `w_row` does not hold exactly `a.len()` blocks.
#[cfg(test)]
pub(crate) fn dot(kind: KQuant, w_row: &[u8], a: &[Q8KBlock]) -> f32 {
    let mut out = [0f32];
    dot_rows(kind, w_row, &[a], &mut out);
    out[0]
}

/// [`dot`] of one weight row with up to four activation rows at once (`out[r]` for `acts[r]`):
/// each weight block is read and unpacked once for all of them, and each output is exactly
/// what [`dot`] gives for its row.
///
/// # Panics
/// If `acts` is empty or holds more than four rows, `out` does not have one value per row, or
/// a row's blocks do not match `w_row`'s.
pub(crate) fn dot_rows(kind: KQuant, w_row: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    check_rows(kind, w_row, acts, out);
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(dot) = crate::kernels::simd::byte_dot() {
            // SAFETY: the CPU has AVX2, FMA, F16C and `dot`'s instructions (`byte_dot`); the
            // lengths match (asserted above).
            unsafe { avx2::dot_rows(dot, kind, w_row, acts, out) };
            return;
        }
    }
    for (o, a) in out.iter_mut().zip(acts) {
        *o = dot_generic(kind, w_row, a);
    }
}

/// [`dot_rows`] for Q4_K in the order of llama.cpp's repacked kernels
/// (`ggml_gemv_q4_K_8x8_q8_K` / `ggml_gemm_q4_K_8x8_q8_K`, its default on AVX2 for Q4_K matrices
/// of a multiple of 8 rows; see `super::repack`): per block the exact integer sums
/// `sumi = Σ scale·q·q8` and `summ = Σ min·bsum`, then `acc = fma(sumi, d·y.d, acc)` and
/// `acc_m = fma(summ, dmin·y.d, acc_m)` block after block; the product is `acc − acc_m`. That
/// is the gemv, which llama.cpp runs for the last `rows % 4` rows of a batch; its gemm, for
/// the groups of four before them, does the same per 64 weights instead of per block. So a
/// group of four rows here sums as the gemm, a smaller one as the gemv (groups of four from
/// the first row, as `GgmlMatrix::matmul` forms them, put every row where llama.cpp does).
///
/// # Panics
/// As [`dot_rows`].
pub(crate) fn dot_rows_repacked(w_row: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    check_rows(KQuant::Q4K, w_row, acts, out);
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(dot) = crate::kernels::simd::byte_dot() {
            // SAFETY: the CPU has AVX2, FMA, F16C and `dot`'s instructions (`byte_dot`); the
            // lengths match (asserted above).
            unsafe { avx2::dot_rows_q4k_repacked(dot, w_row, acts, out) };
            return;
        }
    }
    repacked_generic(w_row, acts, out);
}

/// The shapes [`dot_rows`] and [`dot_rows_repacked`] take: 1 to [`MAX_ROWS`] activation rows,
/// one output each, every row as many blocks as `w_row`.
fn check_rows(kind: KQuant, w_row: &[u8], acts: &[&[Q8KBlock]], out: &[f32]) {
    assert!(
        (1..=MAX_ROWS).contains(&acts.len()) && out.len() == acts.len(),
        "dot_rows: {} activation rows and {} outputs (1 to {MAX_ROWS} each, equal)",
        acts.len(),
        out.len()
    );
    let nb = acts[0].len();
    assert!(
        w_row.len() == nb * kind.block_bytes() && acts.iter().all(|a| a.len() == nb),
        "dot_rows: {} weight bytes for {kind:?} against activation rows of {:?} blocks",
        w_row.len(),
        acts.iter().map(|a| a.len()).collect::<Vec<_>>()
    );
}

/// [`dot_rows_repacked`] portably (`f32::mul_add` is the fused multiply-add).
fn repacked_generic(w_row: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    let kind = KQuant::Q4K;
    // Weights per fused multiply-add: the gemm's 64 or the gemv's whole block.
    let span = if acts.len() == MAX_ROWS { 64 } else { QK_K };
    for (o, a) in out.iter_mut().zip(acts) {
        let (mut acc, mut acc_m) = (0f32, 0f32);
        for (blk, y) in w_row.chunks_exact(kind.block_bytes()).zip(*a) {
            let u = unpack(kind, blk);
            for h in (0..QK_K).step_by(span) {
                let sumi: i32 = (h..h + span)
                    .map(|p| u.scale[p / 16] * i32::from(u.q[p]) * i32::from(y.qs[p]))
                    .sum();
                let summ: i32 = (h / 16..(h + span) / 16)
                    .map(|s| u.min[s] * i32::from(y.bsums[s]))
                    .sum();
                acc = (sumi as f32).mul_add(u.d * y.d, acc);
                acc_m = (summ as f32).mul_add(u.dmin * y.d, acc_m);
            }
        }
        *o = acc - acc_m;
    }
}

/// Activation rows [`dot_rows`] takes at once.
pub(crate) const MAX_ROWS: usize = 4;

/// Dequantizes one row of `out.len() / 256` blocks of `kind`, as ggml's `dequantize_row_q*_K`:
/// per 16 weights `dl = d * scale` and `ml = dmin * min` (Q6_K: `d * scale`), then each weight
/// `dl * q - ml`, in plain f32 operations (ggml-base is built without fused multiply-adds).
///
/// # Panics
/// If `w_row` does not hold exactly `out.len() / 256` blocks.
pub(crate) fn dequantize_row(kind: KQuant, w_row: &[u8], out: &mut [f32]) {
    let bb = kind.block_bytes();
    assert!(
        out.len().is_multiple_of(QK_K) && w_row.len() == out.len() / QK_K * bb,
        "dequantize_row: {} weight bytes of {kind:?} for {} values",
        w_row.len(),
        out.len()
    );
    for (blk, y) in w_row.chunks_exact(bb).zip(out.chunks_exact_mut(QK_K)) {
        let u = unpack(kind, blk);
        for (s, y) in y.chunks_exact_mut(16).enumerate() {
            let dl = u.d * u.scale[s] as f32;
            // Q3_K and Q6_K have no mins: `ml` is +0.0, and `x - 0.0 == x` for every x, so
            // the one formula gives their `dl * q` exactly.
            let ml = u.dmin * u.min[s] as f32;
            for (y, &q) in y.iter_mut().zip(&u.q[16 * s..16 * s + 16]) {
                *y = dl * q as f32 - ml;
            }
        }
    }
}

/// One weight block unpacked into what ggml's scalar code works with.
struct Unpacked {
    /// The integer weights, in order: Q2_K 0..=3, Q3_K -4..=3, Q4_K 0..=15, Q5_K 0..=31,
    /// Q6_K -32..=31.
    q: [i8; QK_K],
    /// The scale of each 16 weights (Q4_K and Q5_K scale 32 at a time: each twice).
    scale: [i32; QK_K / 16],
    /// The min of each 16 weights (zero for Q3_K and Q6_K).
    min: [i32; QK_K / 16],
    d: f32,
    /// Zero for Q3_K and Q6_K.
    dmin: f32,
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_K's and Q5_K's eight 6-bit scales and eight 6-bit mins, packed in 12 bytes: the first
/// four of each in the low 6 bits of bytes 0..4 (scales) and 4..8 (mins), the last four in the
/// nibbles of bytes 8..12 with their top 2 bits in the top bits of bytes 0..8.
#[inline]
fn k4_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, mn)
}

/// Q3_K's sixteen 6-bit scales, packed in 12 bytes (low nibbles of bytes 0..8, then their high
/// nibbles; the top 2 bits in bytes 8..12, two bits per scale), less their offset of 32.
#[inline]
fn q3k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

fn unpack(kind: KQuant, b: &[u8]) -> Unpacked {
    let mut u = Unpacked {
        q: [0; QK_K],
        scale: [0; QK_K / 16],
        min: [0; QK_K / 16],
        d: 0.0,
        dmin: 0.0,
    };
    match kind {
        KQuant::Q2K => {
            // Weight 128n + 32j + l is bits 2j..2j+2 of byte 32n + l.
            let qs = &b[16..80];
            for (p, q) in u.q.iter_mut().enumerate() {
                let (n, j, l) = (p / 128, p / 32 % 4, p % 32);
                *q = ((qs[32 * n + l] >> (2 * j)) & 3) as i8;
            }
            for (s, &sc) in b[..16].iter().enumerate() {
                u.scale[s] = i32::from(sc & 0x0F);
                u.min[s] = i32::from(sc >> 4);
            }
            u.d = f16_at(b, 80);
            u.dmin = f16_at(b, 82);
        }
        KQuant::Q3K => {
            // As Q2_K for the low bits; bit 4n + j of byte l of `hmask` clear means minus 4.
            let (hm, qs) = (&b[..32], &b[32..96]);
            for (p, q) in u.q.iter_mut().enumerate() {
                let (n, j, l) = (p / 128, p / 32 % 4, p % 32);
                let low = ((qs[32 * n + l] >> (2 * j)) & 3) as i8;
                let high = hm[l] & (1 << (4 * n + j)) != 0;
                *q = if high { low } else { low - 4 };
            }
            for (s, &sc) in q3k_scales(&b[96..108]).iter().enumerate() {
                u.scale[s] = i32::from(sc);
            }
            u.d = f16_at(b, 108);
        }
        KQuant::Q4K | KQuant::Q5K => {
            // Weights 64j + l and 64j + 32 + l are the low and high nibble of byte 32j + l;
            // Q5_K adds 16 where bit 2j (low) or 2j + 1 (high) of byte l of `qh` is set.
            let five = kind == KQuant::Q5K;
            let qs = if five { &b[48..176] } else { &b[16..144] };
            for (p, q) in u.q.iter_mut().enumerate() {
                let (j, h, l) = (p / 64, p / 32 % 2, p % 32);
                let mut v = (qs[32 * j + l] >> (4 * h)) & 0x0F;
                if five && b[16 + l] & (1 << (2 * j + h)) != 0 {
                    v += 16;
                }
                *q = v as i8;
            }
            let (sc, mn) = k4_scales_mins(&b[4..16]);
            for s in 0..QK_K / 16 {
                u.scale[s] = i32::from(sc[s / 2]);
                u.min[s] = i32::from(mn[s / 2]);
            }
            u.d = f16_at(b, 0);
            u.dmin = f16_at(b, 2);
        }
        KQuant::Q6K => {
            // Weight 128n + 32j + l: the low (j = 0, 1) or high (j = 2, 3) nibble of byte
            // 64n + 32(j % 2) + l, with bits 2j..2j+2 of byte 128 + 32n + l on top.
            let (ql, qh) = (&b[..128], &b[128..192]);
            for (p, q) in u.q.iter_mut().enumerate() {
                let (n, j, l) = (p / 128, p / 32 % 4, p % 32);
                let low = (ql[64 * n + 32 * (j % 2) + l] >> (4 * (j / 2))) & 0x0F;
                let high = (qh[32 * n + l] >> (2 * j)) & 3;
                *q = (low | (high << 4)) as i8 - 32;
            }
            for (s, &sc) in b[192..208].iter().enumerate() {
                u.scale[s] = i32::from(sc as i8);
            }
            u.d = f16_at(b, 208);
        }
    }
    u
}

/// ggml's `ggml_vec_dot_q*_K_q8_K_generic`: integer sums of `scale * q * q8` in eight lanes by
/// `p % 8` (Q2_K: one sum), each lane scaled by `d` into its own float sum, the mins' term
/// subtracted block by block, and the eight sums added in order at the end.
fn dot_generic(kind: KQuant, w_row: &[u8], a: &[Q8KBlock]) -> f32 {
    let mut sumf = 0f32;
    let mut sums = [0f32; 8];
    for (blk, y) in w_row.chunks_exact(kind.block_bytes()).zip(a) {
        let u = unpack(kind, blk);
        let mut lanes = [0i32; 8];
        for (p, (&q, &q8)) in u.q.iter().zip(&y.qs).enumerate() {
            lanes[p % 8] += u.scale[p / 16] * i32::from(q) * i32::from(q8);
        }
        let mins: i32 = u
            .min
            .iter()
            .zip(&y.bsums)
            .map(|(&m, &s)| m * i32::from(s))
            .sum();
        if kind == KQuant::Q2K {
            let isum: i32 = lanes.iter().sum();
            sumf += y.d * u.d * isum as f32 - y.d * u.dmin * mins as f32;
            continue;
        }
        let d = u.d * y.d;
        for (s, &l) in sums.iter_mut().zip(&lanes) {
            *s += d * l as f32;
        }
        if kind.has_mins() {
            sumf -= u.dmin * y.d * mins as f32;
        }
    }
    if kind != KQuant::Q2K {
        for s in sums {
            sumf += s;
        }
    }
    sumf
}

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(test)]
mod tests;
