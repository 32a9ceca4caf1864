//! ggml's AVX2 `ggml_vec_dot_q*_K_q8_K` kernels, for up to four activation rows per weight row.
//!
//! Each block of 256 weights is unpacked once into eight vectors of 32 unsigned bytes (Q3_K:
//! signed) with their 16-bit scales, chunk `c` holding weights `32c..32c + 32`. Against each
//! activation row, `maddubs` multiplies a chunk by its 32 activations and adds pairs,
//! `madd` applies the scales and adds pairs again, so int32 lane `k` of the block's sum holds
//! the weights at `p % 32` in `4k..4k + 4`, as in ggml. No partial sum can saturate (weights
//! below 64, activations within ±127), so every lane is exact and only which lane a product
//! lands in matters; the float work per block and the final reduction follow ggml operation
//! for operation, the ones that differ between types written out in each kernel. With VNNI
//! the scales' `madd` and the add into the block's sum are one `dpwssd`: the same integers.

use super::{k4_scales_mins, KQuant, Q8KBlock, MAX_ROWS};
use crate::kernels::simd::{f16_bits_to_f32, hsum, ByteDot, PREFETCH_BYTES};
use std::arch::x86_64::*;

/// How [`add_weighted`] applies the scales (a [`ByteDot`] as a const parameter, so that each
/// kernel is compiled once per instruction choice).
const MADD: u8 = 0;
const AVX512_VNNI: u8 = 1;
const AVX_VNNI: u8 = 2;

/// [`super::dot_rows`] with AVX2 and `dot`'s instructions: `out[r]` is the product of `w` with
/// `acts[r]`.
///
/// # Safety
/// The CPU has AVX2, FMA, F16C and `dot`'s instructions; `acts` holds 1 to 4 rows of
/// `w.len() / block bytes` blocks each and `out` one value per row (which `super::dot_rows`
/// asserts).
pub(super) unsafe fn dot_rows(
    dot: ByteDot,
    kind: KQuant,
    w: &[u8],
    acts: &[&[Q8KBlock]],
    out: &mut [f32],
) {
    // SAFETY: the caller's contract.
    unsafe {
        match dot {
            ByteDot::Madd => rows_madd(kind, w, acts, out),
            ByteDot::Avx512Vnni => rows_avx512_vnni(kind, w, acts, out),
            ByteDot::AvxVnni => rows_avx_vnni(kind, w, acts, out),
        }
    }
}

/// [`dot_rows`] with `maddubs` + `madd`.
///
/// # Safety
/// As [`dot_rows`], for AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_madd(kind: KQuant, w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    // SAFETY: as `dot_rows`.
    unsafe { rows_any::<MADD>(kind, w, acts, out) }
}

/// [`dot_rows`] with AVX512-VNNI's `dpwssd` on 256-bit vectors.
///
/// # Safety
/// As [`dot_rows`], for AVX2, FMA, F16C, AVX512-VNNI and AVX512VL.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn rows_avx512_vnni(kind: KQuant, w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    // SAFETY: as `dot_rows`.
    unsafe { rows_any::<AVX512_VNNI>(kind, w, acts, out) }
}

/// [`dot_rows`] with AVX-VNNI's `dpwssd`.
///
/// # Safety
/// As [`dot_rows`], for AVX2, FMA, F16C and AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn rows_avx_vnni(kind: KQuant, w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    // SAFETY: as `dot_rows`.
    unsafe { rows_any::<AVX_VNNI>(kind, w, acts, out) }
}

/// [`dot_rows`] for `D`, by the number of rows.
///
/// # Safety
/// As [`dot_rows`], for `D`'s instructions.
#[inline(always)]
unsafe fn rows_any<const D: u8>(kind: KQuant, w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe {
        match acts.len() {
            1 => rows::<D, 1>(kind, w, acts, out),
            2 => rows::<D, 2>(kind, w, acts, out),
            3 => rows::<D, 3>(kind, w, acts, out),
            _ => rows::<D, MAX_ROWS>(kind, w, acts, out),
        }
    }
}

/// [`super::dot_rows_repacked`] with AVX2 and `dot`'s instructions.
///
/// # Safety
/// As [`dot_rows`], for Q4_K.
pub(super) unsafe fn dot_rows_q4k_repacked(
    dot: ByteDot,
    w: &[u8],
    acts: &[&[Q8KBlock]],
    out: &mut [f32],
) {
    // SAFETY: the caller's contract.
    unsafe {
        match dot {
            ByteDot::Madd => repacked_madd(w, acts, out),
            ByteDot::Avx512Vnni => repacked_avx512_vnni(w, acts, out),
            ByteDot::AvxVnni => repacked_avx_vnni(w, acts, out),
        }
    }
}

/// [`dot_rows_q4k_repacked`] with `maddubs` + `madd`.
///
/// # Safety
/// As [`dot_rows_q4k_repacked`], for AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn repacked_madd(w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    // SAFETY: as `dot_rows_q4k_repacked`.
    unsafe { repacked_any::<MADD>(w, acts, out) }
}

/// [`dot_rows_q4k_repacked`] with AVX512-VNNI's `dpwssd` on 256-bit vectors.
///
/// # Safety
/// As [`dot_rows_q4k_repacked`], for AVX2, FMA, F16C, AVX512-VNNI and AVX512VL.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn repacked_avx512_vnni(w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    // SAFETY: as `dot_rows_q4k_repacked`.
    unsafe { repacked_any::<AVX512_VNNI>(w, acts, out) }
}

/// [`dot_rows_q4k_repacked`] with AVX-VNNI's `dpwssd`.
///
/// # Safety
/// As [`dot_rows_q4k_repacked`], for AVX2, FMA, F16C and AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn repacked_avx_vnni(w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    // SAFETY: as `dot_rows_q4k_repacked`.
    unsafe { repacked_any::<AVX_VNNI>(w, acts, out) }
}

/// [`dot_rows_q4k_repacked`] for `D`, by the number of rows.
///
/// # Safety
/// As [`dot_rows_q4k_repacked`], for `D`'s instructions.
#[inline(always)]
unsafe fn repacked_any<const D: u8>(w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe {
        macro_rules! sized {
            ($($r:literal),*) => {
                match acts.len() {
                    $($r => {
                        let mut a: [&[Q8KBlock]; $r] = [&[]; $r];
                        a.copy_from_slice(&acts[..$r]);
                        out[..$r].copy_from_slice(&q4k_repacked::<D, $r>(w, &a));
                    })*
                    _ => unreachable!("1 to {MAX_ROWS} rows"),
                }
            };
        }
        sized!(1, 2, 3, 4);
    }
}

/// The kernel of `kind` for exactly `R` rows.
///
/// # Safety
/// As [`dot_rows`], with `acts.len() == out.len() == R`.
#[inline(always)]
unsafe fn rows<const D: u8, const R: usize>(
    kind: KQuant,
    w: &[u8],
    acts: &[&[Q8KBlock]],
    out: &mut [f32],
) {
    let mut a: [&[Q8KBlock]; R] = [&[]; R];
    a.copy_from_slice(&acts[..R]);
    // SAFETY: the caller's contract.
    let res = unsafe {
        match kind {
            KQuant::Q2K => q2k::<D, R>(w, &a),
            KQuant::Q3K => q3k::<D, R>(w, &a),
            KQuant::Q4K => q4k::<D, R>(w, &a),
            KQuant::Q5K => q5k::<D, R>(w, &a),
            KQuant::Q6K => q6k::<D, R>(w, &a),
        }
    };
    out[..R].copy_from_slice(&res);
}

/// 32 bytes from `p`, unaligned.
///
/// # Safety
/// AVX2; `p..p + 32` is readable.
#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: this function's contract.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// The little-endian f16 at byte `i` of `b`, read byte by byte (blocks are unaligned).
///
/// # Safety
/// F16C.
#[inline(always)]
unsafe fn f16_at(b: &[u8], i: usize) -> f32 {
    // SAFETY: this function's contract.
    unsafe { f16_bits_to_f32(u16::from_le_bytes([b[i], b[i + 1]])) }
}

/// Asks for the weights `PREFETCH_BYTES` ahead of `blk` (see its doc: the hardware prefetcher
/// stops at page ends).
///
/// # Safety
/// SSE (a prefetch never faults, wherever it points).
#[inline(always)]
unsafe fn prefetch(blk: &[u8]) {
    // SAFETY: prefetching reads nothing architecturally.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(blk.as_ptr().wrapping_add(PREFETCH_BYTES) as *const i8) };
}

/// Activations `32c..32c + 32` of `y`.
///
/// # Safety
/// AVX2; `c < 8`.
#[inline(always)]
unsafe fn chunk(y: &Q8KBlock, c: usize) -> __m256i {
    debug_assert!(c < 8);
    // SAFETY: `qs` holds 256 bytes and `32c + 32 <= 256`.
    unsafe { load(y.qs.as_ptr().add(32 * c) as *const u8) }
}

/// The 16 sums of 16 activations of `y`, as 16-bit lanes.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn bsums(y: &Q8KBlock) -> __m256i {
    // SAFETY: `bsums` is 16 × 2 bytes.
    unsafe { load(y.bsums.as_ptr() as *const u8) }
}

/// The eight chunks' scales from a block's sixteen 16-bit scales (one per 16 weights, `s16`
/// lane `j` for weights `16j..16j + 16`): chunk `c` gets scale `2c` in its low 128-bit lane
/// (its first 16 weights) and `2c + 1` in the high one. Two lane broadcasts and a byte shuffle
/// per chunk.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn chunk_scales(s16: __m256i) -> [__m256i; 8] {
    // SAFETY: this function's contract.
    unsafe {
        let first = _mm256_permute2x128_si256::<0x00>(s16, s16); // scales 0..8 in both lanes
        let last = _mm256_permute2x128_si256::<0x11>(s16, s16); // scales 8..16 in both lanes
        std::array::from_fn(|c| {
            // Bytes of 16-bit element `2(c % 4)` in the low lane, of the next one in the high.
            let e = 4 * (c % 4) as i8;
            let pick = _mm256_setr_epi8(
                e,
                e + 1,
                e,
                e + 1,
                e,
                e + 1,
                e,
                e + 1,
                e,
                e + 1,
                e,
                e + 1,
                e,
                e + 1,
                e,
                e + 1,
                e + 2,
                e + 3,
                e + 2,
                e + 3,
                e + 2,
                e + 3,
                e + 2,
                e + 3,
                e + 2,
                e + 3,
                e + 2,
                e + 3,
                e + 2,
                e + 3,
                e + 2,
                e + 3,
            );
            _mm256_shuffle_epi8(if c < 4 { first } else { last }, pick)
        })
    }
}

/// `sum` plus `scale · q · y` of one chunk, in ggml's eight int32 lanes: `madd` then add, or
/// one `dpwssd` (the same pair products and sums; no lane can overflow).
///
/// # Safety
/// AVX2 and `D`'s instructions (AVX512-VNNI with AVX512VL, or AVX-VNNI).
#[inline(always)]
unsafe fn add_weighted<const D: u8>(
    sum: __m256i,
    q: __m256i,
    y: __m256i,
    scale: __m256i,
) -> __m256i {
    // SAFETY: this function's contract.
    unsafe {
        let pairs = _mm256_maddubs_epi16(q, y);
        match D {
            AVX512_VNNI => _mm256_dpwssd_epi32(sum, pairs, scale),
            AVX_VNNI => _mm256_dpwssd_avx_epi32(sum, pairs, scale),
            _ => _mm256_add_epi32(sum, _mm256_madd_epi16(scale, pairs)),
        }
    }
}

/// A byte of `val` where bit `bit` of the byte of `bits` is set, 0 where it is clear.
///
/// # Safety
/// AVX2; `bit < 8`.
#[inline(always)]
unsafe fn where_set(bits: __m256i, bit: usize, val: i8) -> __m256i {
    // SAFETY: this function's contract.
    unsafe {
        let m = _mm256_set1_epi8((1u8 << bit) as i8);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(bits, m), m);
        _mm256_and_si256(set, _mm256_set1_epi8(val))
    }
}

/// Eight float lanes then a scalar, as ggml ends Q2_K, Q3_K and Q6_K (`hsum_float_8`).
///
/// # Safety
/// AVX2 and FMA.
#[inline(always)]
unsafe fn finish<const R: usize>(acc: &[__m256; R]) -> [f32; R] {
    let mut out = [0f32; R];
    for (o, &a) in out.iter_mut().zip(acc) {
        // SAFETY: this function's contract.
        *o = unsafe { hsum(a) };
    }
    out
}

/// Q2_K: `acc = fma(dmin, mins·bsums, acc)` then `acc = fma(d, sumi, acc)` per block, with
/// `d = y.d·d_x`, `dmin = -y.d·dmin_x`; the mins' products are the eight int32 lanes of
/// `madd(mins, bsums)` (lane `k`: sub-blocks `2k`, `2k + 1`).
///
/// # Safety
/// AVX2, FMA, F16C; every row of `a` has `w.len() / 84` blocks.
#[inline(always)]
unsafe fn q2k<const D: u8, const R: usize>(w: &[u8], a: &[&[Q8KBlock]; R]) -> [f32; R] {
    // SAFETY: the caller's contract; every load stays inside its 84-byte block (scales
    // 0..16, quants 16..80) or inside a `Q8KBlock`.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, blk) in w.chunks_exact(KQuant::Q2K.block_bytes()).enumerate() {
            prefetch(blk);
            let (wd, wmin) = (f16_at(blk, 80), f16_at(blk, 82));
            let raw = _mm_loadu_si128(blk.as_ptr() as *const __m128i);
            let mins =
                _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), _mm_set1_epi8(0x0F)));
            let mut q = [_mm256_setzero_si256(); 8];
            for j in 0..2 {
                let bits = load(blk.as_ptr().add(16 + 32 * j));
                q[4 * j] = _mm256_and_si256(bits, m3);
                q[4 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<2>(bits), m3);
                q[4 * j + 2] = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m3);
                q[4 * j + 3] = _mm256_and_si256(_mm256_srli_epi16::<6>(bits), m3);
            }
            let sc = chunk_scales(_mm256_cvtepu8_epi16(_mm_and_si128(
                raw,
                _mm_set1_epi8(0x0F),
            )));
            for r in 0..R {
                let y = &a[r][b];
                let d = y.d * wd;
                let dmin = -y.d * wmin;
                let prod = _mm256_madd_epi16(mins, bsums(y));
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc[r]);
                let mut sumi = _mm256_setzero_si256();
                for c in 0..8 {
                    sumi = add_weighted::<D>(sumi, q[c], chunk(y, c), sc[c]);
                }
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[r]);
            }
        }
        finish(&acc)
    }
}

/// Q3_K: `acc = fma(d, sumi, acc)` per block, `d = y.d·d_x`. ggml multiplies the low two bits
/// and the "minus 4" of a clear high bit separately and subtracts the 16-bit pair sums; the
/// signed weights times activations through `|q|` and `sign(y, q)` give the same exact pair
/// sums in one `maddubs`.
///
/// # Safety
/// AVX2, FMA, F16C; every row of `a` has `w.len() / 110` blocks.
#[inline(always)]
unsafe fn q3k<const D: u8, const R: usize>(w: &[u8], a: &[&[Q8KBlock]; R]) -> [f32; R] {
    // SAFETY: the caller's contract; every load stays inside its 110-byte block (high bits
    // 0..32, quants 32..96) or inside a `Q8KBlock`.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, blk) in w.chunks_exact(KQuant::Q3K.block_bytes()).enumerate() {
            prefetch(blk);
            let wd = f16_at(blk, 108);
            let scales = q3k_scales_simd(&blk[96..108]);
            let hbits = load(blk.as_ptr());
            let mut q = [_mm256_setzero_si256(); 8];
            for j in 0..2 {
                let bits = load(blk.as_ptr().add(32 + 32 * j));
                let low = [
                    _mm256_and_si256(bits, m3),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(bits), m3),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m3),
                    _mm256_and_si256(_mm256_srli_epi16::<6>(bits), m3),
                ];
                for (s, low) in low.into_iter().enumerate() {
                    let c = 4 * j + s;
                    let minus4 = _mm256_andnot_si256(where_set(hbits, c, -1), _mm256_set1_epi8(4));
                    q[c] = _mm256_sub_epi8(low, minus4);
                }
            }
            let sc = chunk_scales(_mm256_cvtepi8_epi16(scales));
            for r in 0..R {
                let y = &a[r][b];
                let d = y.d * wd;
                let mut sumi = _mm256_setzero_si256();
                for c in 0..8 {
                    let sy = _mm256_sign_epi8(chunk(y, c), q[c]);
                    sumi = add_weighted::<D>(sumi, _mm256_abs_epi8(q[c]), sy, sc[c]);
                }
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[r]);
            }
        }
        finish(&acc)
    }
}

/// [`super::q3k_scales`] four at a time in 32-bit words, as 16 signed bytes (scale `j` in byte `j`).
///
/// # Safety
/// SSE4.1; `s` holds 12 bytes.
#[inline(always)]
unsafe fn q3k_scales_simd(s: &[u8]) -> __m128i {
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a, b, top) = (word(0), word(1), word(2));
    let (nib, two) = (0x0F0F_0F0F, 0x0303_0303);
    let w = [
        (a & nib) | ((top & two) << 4),
        (b & nib) | (((top >> 2) & two) << 4),
        ((a >> 4) & nib) | (((top >> 4) & two) << 4),
        ((b >> 4) & nib) | (((top >> 6) & two) << 4),
    ];
    // SAFETY: this function's contract.
    unsafe {
        let v = _mm_setr_epi32(w[0] as i32, w[1] as i32, w[2] as i32, w[3] as i32);
        _mm_sub_epi8(v, _mm_set1_epi8(32))
    }
}

/// The mins of Q4_K and Q5_K times the activations' sums, in four int32 lanes as ggml forms
/// them: pairs of `bsums` added (`hadd`), then `madd` with the eight mins, so lane `k` holds
/// sub-blocks `2k` and `2k + 1` of 32.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn k4_mins(mins: __m128i, y: &Q8KBlock) -> __m128i {
    // SAFETY: this function's contract.
    unsafe {
        let s = bsums(y);
        let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        _mm_madd_epi16(mins, pairs)
    }
}

/// The 16-bit scales of Q4_K's and Q5_K's chunks (one per 32 weights) and their mins.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn k4_scales(packed: &[u8]) -> ([__m256i; 8], __m128i) {
    let (sc, mn) = k4_scales_mins(packed);
    // SAFETY: this function's contract.
    unsafe {
        let mut scales = [_mm256_setzero_si256(); 8];
        for (s, &v) in scales.iter_mut().zip(&sc) {
            *s = _mm256_set1_epi16(i16::from(v));
        }
        let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(mn.as_ptr() as *const __m128i));
        (scales, mins)
    }
}

/// One Q4_K block unpacked: its scales, its chunks' 16-bit scales and mins, and its 256
/// nibbles as eight vectors of 32 bytes (chunk `c`: weights `32c..32c + 32`).
struct Q4KBlock {
    wd: f32,
    wmin: f32,
    sc: [__m256i; 8],
    mins: __m128i,
    q: [__m256i; 8],
}

/// Unpacks (and prefetches past) one 144-byte Q4_K block.
///
/// # Safety
/// AVX2 and F16C; `blk` holds 144 bytes.
#[inline(always)]
unsafe fn q4k_block(blk: &[u8]) -> Q4KBlock {
    // SAFETY: this function's contract; the loads stay inside the block (nibbles 16..144).
    unsafe {
        prefetch(blk);
        let m4 = _mm256_set1_epi8(0x0F);
        let (sc, mins) = k4_scales(&blk[4..16]);
        let mut q = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            let bits = load(blk.as_ptr().add(16 + 32 * j));
            q[2 * j] = _mm256_and_si256(bits, m4);
            q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
        }
        Q4KBlock {
            wd: f16_at(blk, 0),
            wmin: f16_at(blk, 2),
            sc,
            mins,
            q,
        }
    }
}

/// Q4_K: `acc = fma(d, sumi, acc)` in eight lanes and `acc_m = fma(dmin, mins, acc_m)` in
/// four, `d = y.d·d_x`, `dmin = -y.d·dmin_x`; at the end `acc_m` is reduced as
/// `(m0 + m2) + (m1 + m3)` and added to `hsum_float_8(acc)`.
///
/// # Safety
/// AVX2, FMA, F16C; every row of `a` has `w.len() / 144` blocks.
#[inline(always)]
unsafe fn q4k<const D: u8, const R: usize>(w: &[u8], a: &[&[Q8KBlock]; R]) -> [f32; R] {
    // SAFETY: the caller's contract; every load stays inside its 144-byte block (nibbles
    // 16..144) or inside a `Q8KBlock`.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_m = [_mm_setzero_ps(); R];
        for (b, blk) in w.chunks_exact(KQuant::Q4K.block_bytes()).enumerate() {
            let Q4KBlock {
                wd,
                wmin,
                sc,
                mins,
                q,
            } = q4k_block(blk);
            for r in 0..R {
                let y = &a[r][b];
                let d = y.d * wd;
                let dmin = -y.d * wmin;
                let prod = k4_mins(mins, y);
                acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[r]);
                let mut sumi = _mm256_setzero_si256();
                for c in 0..8 {
                    sumi = add_weighted::<D>(sumi, q[c], chunk(y, c), sc[c]);
                }
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[r]);
            }
        }
        let mut out = finish(&acc);
        for (o, m) in out.iter_mut().zip(acc_m) {
            let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_add_ss(m, _mm_movehdup_ps(m));
            *o += _mm_cvtss_f32(m);
        }
        out
    }
}

/// Q4_K in llama.cpp's repacked order (see [`super::dot_rows_repacked`]): [`q4k`]'s integer
/// sums, reduced to one integer per block (one per 64 weights for a group of four rows, as the
/// gemm), then one scalar fused multiply-add each for the scales and the mins.
///
/// # Safety
/// As [`q4k`].
#[inline(always)]
unsafe fn q4k_repacked<const D: u8, const R: usize>(w: &[u8], a: &[&[Q8KBlock]; R]) -> [f32; R] {
    // SAFETY: as `q4k`.
    unsafe {
        let zero = _mm256_setzero_si256();
        let mut acc = [0f32; R];
        let mut acc_m = [0f32; R];
        for (b, blk) in w.chunks_exact(KQuant::Q4K.block_bytes()).enumerate() {
            let Q4KBlock {
                wd,
                wmin,
                sc,
                mins,
                q,
            } = q4k_block(blk);
            for r in 0..R {
                let y = &a[r][b];
                // Lane `k`: the mins' products of the 64 weights `64k..64k + 64`.
                let prod = k4_mins(mins, y);
                let (ds, dm) = (wd * y.d, wmin * y.d);
                let sums: [__m256i; 4] = std::array::from_fn(|h| {
                    let (c0, c1) = (2 * h, 2 * h + 1);
                    let s = add_weighted::<D>(zero, q[c0], chunk(y, c0), sc[c0]);
                    add_weighted::<D>(s, q[c1], chunk(y, c1), sc[c1])
                });
                if R == MAX_ROWS {
                    // The four sums' totals side by side (integers: any order is exact).
                    let t = _mm256_hadd_epi32(
                        _mm256_hadd_epi32(sums[0], sums[1]),
                        _mm256_hadd_epi32(sums[2], sums[3]),
                    );
                    let t =
                        _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
                    let (mut st, mut pm) = ([0f32; 4], [0f32; 4]);
                    _mm_storeu_ps(st.as_mut_ptr(), _mm_cvtepi32_ps(t));
                    _mm_storeu_ps(pm.as_mut_ptr(), _mm_cvtepi32_ps(prod));
                    for (&s, &m) in st.iter().zip(&pm) {
                        acc[r] = s.mul_add(ds, acc[r]);
                        acc_m[r] = m.mul_add(dm, acc_m[r]);
                    }
                } else {
                    let s = _mm256_add_epi32(
                        _mm256_add_epi32(sums[0], sums[1]),
                        _mm256_add_epi32(sums[2], sums[3]),
                    );
                    acc[r] = (hsum_i32x8(s) as f32).mul_add(ds, acc[r]);
                    acc_m[r] = (hsum_i32x4(prod) as f32).mul_add(dm, acc_m[r]);
                }
            }
        }
        std::array::from_fn(|r| acc[r] - acc_m[r])
    }
}

/// The eight int32 lanes' sum (exact: integers).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn hsum_i32x8(v: __m256i) -> i32 {
    // SAFETY: this function's contract.
    unsafe {
        hsum_i32x4(_mm_add_epi32(
            _mm256_castsi256_si128(v),
            _mm256_extracti128_si256::<1>(v),
        ))
    }
}

/// The four int32 lanes' sum (exact: integers).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn hsum_i32x4(v: __m128i) -> i32 {
    // SAFETY: this function's contract.
    unsafe {
        let v = _mm_hadd_epi32(v, v);
        _mm_cvtsi128_si32(_mm_hadd_epi32(v, v))
    }
}

/// Q5_K: as Q4_K with a fifth bit (16) from `qh`, but the mins' four lanes are summed as
/// integers into a scalar `summs = fma(dmin, sum, summs)`: ggml writes `summs += dmin * sum`,
/// which its build (`-std=gnu11 -march=native`, so `-ffp-contract=fast`) compiles to one
/// fused multiply-add. The result is `hsum_float_8(acc) + summs`.
///
/// # Safety
/// AVX2, FMA, F16C; every row of `a` has `w.len() / 176` blocks.
#[inline(always)]
unsafe fn q5k<const D: u8, const R: usize>(w: &[u8], a: &[&[Q8KBlock]; R]) -> [f32; R] {
    // SAFETY: the caller's contract; every load stays inside its 176-byte block (fifth bits
    // 16..48, nibbles 48..176) or inside a `Q8KBlock`.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut summs = [0f32; R];
        for (b, blk) in w.chunks_exact(KQuant::Q5K.block_bytes()).enumerate() {
            prefetch(blk);
            let (wd, wmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let (sc, mins) = k4_scales(&blk[4..16]);
            let hbits = load(blk.as_ptr().add(16));
            let mut q = [_mm256_setzero_si256(); 8];
            for j in 0..4 {
                let bits = load(blk.as_ptr().add(48 + 32 * j));
                let lo = _mm256_and_si256(bits, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                q[2 * j] = _mm256_add_epi8(lo, where_set(hbits, 2 * j, 16));
                q[2 * j + 1] = _mm256_add_epi8(hi, where_set(hbits, 2 * j + 1, 16));
            }
            for r in 0..R {
                let y = &a[r][b];
                let d = y.d * wd;
                let dmin = -y.d * wmin;
                let prod = k4_mins(mins, y);
                let s = _mm_hadd_epi32(prod, prod);
                let s = _mm_cvtsi128_si32(_mm_hadd_epi32(s, s));
                summs[r] = dmin.mul_add(s as f32, summs[r]);
                let mut sumi = _mm256_setzero_si256();
                for c in 0..8 {
                    sumi = add_weighted::<D>(sumi, q[c], chunk(y, c), sc[c]);
                }
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[r]);
            }
        }
        let mut out = finish(&acc);
        for (o, s) in out.iter_mut().zip(summs) {
            *o += s;
        }
        out
    }
}

/// Q6_K: the weights as unsigned 0..=63, their offset of 32 taken off the int32 lanes as
/// `32 · madd(bsums, scales)` (lane `k`: sub-blocks `2k`, `2k + 1`, not the lanes the
/// products fall in, which changes the float conversion), then `acc = fma(d, sumi, acc)`,
/// `d = y.d·d_x`.
///
/// # Safety
/// AVX2, FMA, F16C; every row of `a` has `w.len() / 210` blocks.
#[inline(always)]
unsafe fn q6k<const D: u8, const R: usize>(w: &[u8], a: &[&[Q8KBlock]; R]) -> [f32; R] {
    // SAFETY: the caller's contract; every load stays inside its 210-byte block (low nibbles
    // 0..128, high bits 128..192, scales 192..208) or inside a `Q8KBlock`.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let m15 = _mm256_set1_epi8(15);
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, blk) in w.chunks_exact(KQuant::Q6K.block_bytes()).enumerate() {
            prefetch(blk);
            let wd = f16_at(blk, 208);
            let raw = _mm_loadu_si128(blk.as_ptr().add(192) as *const __m128i);
            let scales16 = _mm256_cvtepi8_epi16(raw);
            let mut q = [_mm256_setzero_si256(); 8];
            for n in 0..2 {
                let l1 = load(blk.as_ptr().add(64 * n));
                let l2 = load(blk.as_ptr().add(64 * n + 32));
                let h = load(blk.as_ptr().add(128 + 32 * n));
                let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(h, m3));
                let h1 = _mm256_slli_epi16::<2>(_mm256_and_si256(h, _mm256_set1_epi8(12)));
                let h2 = _mm256_and_si256(h, _mm256_set1_epi8(48));
                let h3 = _mm256_srli_epi16::<2>(_mm256_and_si256(h, _mm256_set1_epi8(-64)));
                q[4 * n] = _mm256_or_si256(_mm256_and_si256(l1, m15), h0);
                q[4 * n + 1] = _mm256_or_si256(_mm256_and_si256(l2, m15), h1);
                let l1h = _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m15);
                let l2h = _mm256_and_si256(_mm256_srli_epi16::<4>(l2), m15);
                q[4 * n + 2] = _mm256_or_si256(l1h, h2);
                q[4 * n + 3] = _mm256_or_si256(l2h, h3);
            }
            let sc = chunk_scales(scales16);
            for r in 0..R {
                let y = &a[r][b];
                let d = y.d * wd;
                let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums(y), scales16));
                let mut sumi = _mm256_setzero_si256();
                for c in 0..8 {
                    sumi = add_weighted::<D>(sumi, q[c], chunk(y, c), sc[c]);
                }
                let sumi = _mm256_sub_epi32(sumi, offset);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[r]);
            }
        }
        finish(&acc)
    }
}
