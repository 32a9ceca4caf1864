//! The AVX2 kernels of the ggml products (with AVX512-VNNI / AVX-VNNI byte dots where the CPU
//! has them), chosen at run time by the caller.

use super::{Kind, Out, Q8Block, Tile, QK};
use crate::kernels::simd::{f16_bits_to_f32, hsum, round_to_f16, ByteDot, PREFETCH_BYTES};
use std::arch::x86_64::*;

/// The f16 at byte `i` of a block, as f32 (F16C, inlined: see [`f16_bits_to_f32`]).
///
/// # Safety
/// The CPU has F16C; the caller is compiled with it.
#[inline(always)]
unsafe fn f16_at_f16c(b: &[u8], i: usize) -> f32 {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe { f16_bits_to_f32(u16::from_le_bytes([b[i], b[i + 1]])) }
}

/// How [`mul_sum_us8`] sums byte products (a [`ByteDot`] as a const parameter, so that
/// each kernel is compiled once per instruction choice).
const MADD: u8 = 0;
const AVX512_VNNI: u8 = 1;
const AVX_VNNI: u8 = 2;

/// Unsigned bytes times signed bytes, summed in fours, as floats (8 lanes). The products
/// of u8 nibbles or |i8| by i8 never saturate `maddubs`' 16-bit pair sums, so every `D`
/// gives the same integers. Inlined into a kernel compiled with `D`'s CPU features.
///
/// # Safety
/// The CPU has AVX2 and `D`'s instructions (AVX512-VNNI with AVX512VL, or AVX-VNNI).
#[inline(always)]
unsafe fn mul_sum_us8<const D: u8>(ux: __m256i, sy: __m256i) -> __m256 {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        let sums = match D {
            AVX512_VNNI => _mm256_dpbusd_epi32(_mm256_setzero_si256(), ux, sy),
            AVX_VNNI => _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ux, sy),
            _ => _mm256_madd_epi16(_mm256_maddubs_epi16(ux, sy), _mm256_set1_epi16(1)),
        };
        _mm256_cvtepi32_ps(sums)
    }
}

/// [`super::fill_task`] with the tile kernels inlined, compiled for `dot`'s instructions.
///
/// # Safety
/// The CPU has AVX2, FMA and `dot`'s instructions; [`super::fill_task`]'s contract.
pub unsafe fn fill_task(
    dot: ByteDot,
    kind: Kind,
    w: &[u8],
    row_bytes: usize,
    groups: &[&[&[Q8Block]]],
    out: Out,
    first: usize,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match dot {
            ByteDot::Madd => fill_madd(kind, w, row_bytes, groups, out, first),
            ByteDot::Avx512Vnni => fill_avx512_vnni(kind, w, row_bytes, groups, out, first),
            ByteDot::AvxVnni => fill_avx_vnni(kind, w, row_bytes, groups, out, first),
        }
    }
}

/// [`fill_task`] with `maddubs` + `madd` byte dots.
///
/// # Safety
/// As [`fill_task`], for AVX2 and FMA.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fill_madd(k: Kind, w: &[u8], rb: usize, g: &[&[&[Q8Block]]], o: Out, f: usize) {
    // SAFETY: as `fill_task`.
    unsafe { fill_with::<MADD>(k, w, rb, g, o, f) }
}

/// [`fill_task`] with AVX512-VNNI's `dpbusd` on 256-bit vectors.
///
/// # Safety
/// As [`fill_task`], for AVX2, FMA, AVX512-VNNI and AVX512VL.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn fill_avx512_vnni(k: Kind, w: &[u8], rb: usize, g: &[&[&[Q8Block]]], o: Out, f: usize) {
    // SAFETY: as `fill_task`.
    unsafe { fill_with::<AVX512_VNNI>(k, w, rb, g, o, f) }
}

/// [`fill_task`] with AVX-VNNI's `dpbusd`.
///
/// # Safety
/// As [`fill_task`], for AVX2, FMA and AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn fill_avx_vnni(k: Kind, w: &[u8], rb: usize, g: &[&[&[Q8Block]]], o: Out, f: usize) {
    // SAFETY: as `fill_task`.
    unsafe { fill_with::<AVX_VNNI>(k, w, rb, g, o, f) }
}

/// The tile walk with `D`'s kernels, inlined into each `fill_*` entry point.
///
/// # Safety
/// As [`fill_task`], for `D`'s instructions.
#[inline(always)]
unsafe fn fill_with<const D: u8>(
    kind: Kind,
    w: &[u8],
    row_bytes: usize,
    groups: &[&[&[Q8Block]]],
    out: Out,
    first: usize,
) {
    // SAFETY: the callers' contract.
    unsafe {
        super::fill_tiles(
            kind.tile_rows(),
            w,
            row_bytes,
            groups,
            out,
            first,
            // A closure has no target features of its own, so the intrinsics of a kernel
            // inlined into it would become calls unless the whole build enables AVX2: the
            // closure calls a kernel entry compiled with `D`'s features instead.
            |ws, a, out| match D {
                AVX512_VNNI => tile_avx512_vnni(kind, ws, a, out),
                AVX_VNNI => tile_avx_vnni(kind, ws, a, out),
                _ => tile_madd(kind, ws, a, out),
            },
        )
    };
}

/// [`dot_tile`] with `maddubs` + `madd` byte dots.
///
/// # Safety
/// As [`dot_tile`], for AVX2 and FMA.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_madd(kind: Kind, ws: &[&[u8]], a: &[&[Q8Block]], out: &mut Tile) {
    // SAFETY: as `dot_tile`.
    unsafe { dot_tile::<MADD>(kind, ws, a, out) }
}

/// [`dot_tile`] with AVX512-VNNI's `dpbusd` on 256-bit vectors.
///
/// # Safety
/// As [`dot_tile`], for AVX2, FMA, AVX512-VNNI and AVX512VL.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn tile_avx512_vnni(kind: Kind, ws: &[&[u8]], a: &[&[Q8Block]], out: &mut Tile) {
    // SAFETY: as `dot_tile`.
    unsafe { dot_tile::<AVX512_VNNI>(kind, ws, a, out) }
}

/// [`dot_tile`] with AVX-VNNI's `dpbusd`.
///
/// # Safety
/// As [`dot_tile`], for AVX2, FMA and AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn tile_avx_vnni(kind: Kind, ws: &[&[u8]], a: &[&[Q8Block]], out: &mut Tile) {
    // SAFETY: as `dot_tile`.
    unsafe { dot_tile::<AVX_VNNI>(kind, ws, a, out) }
}

/// [`super::quantize_block`] eight lanes at a time, as ggml's AVX2 `quantize_row_q8_1`:
/// the same maximum, products and round-half-to-even, so the same blocks.
///
/// # Safety
/// The CPU has AVX2. (Reads stay inside `x`: whole blocks of 32 from `chunks_exact`.)
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn quantize_into(x: &[f32], kind: Kind, out: &mut [Q8Block]) {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        for (b, o) in x.chunks_exact(QK).zip(out.iter_mut()) {
            let p = b.as_ptr();
            let v = [0, 8, 16, 24].map(|i| _mm256_loadu_ps(p.add(i)));
            let mut amax = _mm256_andnot_ps(sign, v[0]);
            for vi in &v[1..] {
                amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, *vi));
            }
            let m4 = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
            let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            let amax = _mm_cvtss_f32(m4);
            let d = amax / 127.0;
            let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let q = v.map(|vi| {
                _mm256_cvtps_epi32(_mm256_round_ps(
                    _mm256_mul_ps(vi, id),
                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
                ))
            });
            // The packs interleave 128-bit lanes; the permute puts the 32 values back in order.
            let q16a = _mm256_packs_epi32(q[0], q[1]);
            let q16b = _mm256_packs_epi32(q[2], q[3]);
            let q8 = _mm256_packs_epi16(q16a, q16b);
            let q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(o.qs.as_mut_ptr() as *mut __m256i, q8);
            o.d = round_to_f16(d);
            o.s = match kind {
                Kind::Q4_1 => {
                    let s = _mm256_add_epi32(
                        _mm256_add_epi32(q[0], q[1]),
                        _mm256_add_epi32(q[2], q[3]),
                    );
                    let s4 =
                        _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                    let s4 = _mm_hadd_epi32(s4, s4);
                    let s4 = _mm_hadd_epi32(s4, s4);
                    round_to_f16(d * _mm_cvtsi128_si32(s4) as f32)
                }
                Kind::Q8_0 => 0.0,
            };
        }
    }
}

/// Dispatches a tile to the kernel instantiated for its exact size.
///
/// # Safety
/// As [`q4_1`] and [`q8_0`].
#[inline(always)]
unsafe fn dot_tile<const D: u8>(kind: Kind, ws: &[&[u8]], a: &[&[Q8Block]], out: &mut Tile) {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        macro_rules! sized {
            ($($w:literal, $r:literal);*) => {
                match (ws.len(), a.len()) {
                    $(($w, $r) => match kind {
                        Kind::Q4_1 => q4_1::<D, $w, $r>(ws, a, out),
                        Kind::Q8_0 => q8_0::<D, $w, $r>(ws, a, out),
                    },)*
                    _ => {}
                }
            };
        }
        sized!(1, 1; 1, 2; 1, 3; 1, 4; 2, 1; 2, 2; 2, 3; 2, 4);
    }
}

/// ggml's AVX2 `ggml_vec_dot_q4_1_q8_1`, for a `W × R` tile: per pair, `summs += m * s`
/// and `acc = fma(d * d_y, xy, acc)` block by block, then `hsum(acc) + summs`.
///
/// # Safety
/// The CPU has AVX2, FMA and `D`'s instructions. (Reads are bounds-checked by the asserts
/// at the top.)
#[inline(always)]
unsafe fn q4_1<const D: u8, const W: usize, const R: usize>(
    ws: &[&[u8]],
    a: &[&[Q8Block]],
    out: &mut Tile,
) {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        // The unchecked reads below stay inside these bounds.
        let nb = a[0].len();
        assert!(a.len() == R && ws.len() == W);
        assert!(a.iter().all(|r| r.len() == nb) && ws.iter().all(|w| w.len() == nb * 20));
        let mut acc = [[_mm256_setzero_ps(); R]; W];
        // `summs` of every activation row side by side: lane r is row r's scalar sum.
        let mut summs = [_mm_setzero_ps(); W];
        let low = _mm256_set1_epi8(0x0F);
        for b in 0..nb {
            let mut qy = [_mm256_setzero_si256(); R];
            let mut sy = [0f32; 4];
            for r in 0..R {
                let y = a[r].get_unchecked(b);
                qy[r] = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                sy[r] = y.s;
            }
            let sy = _mm_loadu_ps(sy.as_ptr());
            for i in 0..W {
                let blk = ws[i].get_unchecked(b * 20..b * 20 + 20);
                _mm_prefetch::<_MM_HINT_T0>(blk.as_ptr().wrapping_add(PREFETCH_BYTES) as *const i8);
                let (d, m) = (f16_at_f16c(blk, 0), f16_at_f16c(blk, 2));
                summs[i] = _mm_add_ps(summs[i], _mm_mul_ps(_mm_set1_ps(m), sy));
                let raw = _mm_loadu_si128(blk.as_ptr().add(4) as *const __m128i);
                // Low nibbles are elements 0..16, high nibbles 16..32.
                let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
                let qx = _mm256_and_si256(both, low);
                let dv = _mm256_set1_ps(d);
                for r in 0..R {
                    let y = a[r].get_unchecked(b);
                    let xy = mul_sum_us8::<D>(qx, qy[r]);
                    let scale = _mm256_mul_ps(dv, _mm256_broadcast_ss(&y.d));
                    acc[i][r] = _mm256_fmadd_ps(scale, xy, acc[i][r]);
                }
            }
        }
        for i in 0..W {
            let mut s = [0f32; 4];
            _mm_storeu_ps(s.as_mut_ptr(), summs[i]);
            for r in 0..R {
                out[i][r] = hsum(acc[i][r]) + s[r];
            }
        }
    }
}

/// ggml's AVX2 `ggml_vec_dot_q8_0_q8_0` for a `W × R` tile (signed × signed through
/// `|x|` and the sign moved onto `y`).
///
/// # Safety
/// As [`q4_1`].
#[inline(always)]
unsafe fn q8_0<const D: u8, const W: usize, const R: usize>(
    ws: &[&[u8]],
    a: &[&[Q8Block]],
    out: &mut Tile,
) {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        // The unchecked reads below stay inside these bounds.
        let nb = a[0].len();
        assert!(a.len() == R && ws.len() == W);
        assert!(a.iter().all(|r| r.len() == nb) && ws.iter().all(|w| w.len() == nb * 34));
        let mut acc = [[_mm256_setzero_ps(); R]; W];
        for b in 0..nb {
            let mut qy = [_mm256_setzero_si256(); R];
            for r in 0..R {
                qy[r] = _mm256_loadu_si256(a[r].get_unchecked(b).qs.as_ptr() as *const __m256i);
            }
            for i in 0..W {
                let blk = ws[i].get_unchecked(b * 34..b * 34 + 34);
                _mm_prefetch::<_MM_HINT_T0>(blk.as_ptr().wrapping_add(PREFETCH_BYTES) as *const i8);
                let d = f16_at_f16c(blk, 0);
                let qx = _mm256_loadu_si256(blk.as_ptr().add(2) as *const __m256i);
                let ax = _mm256_sign_epi8(qx, qx);
                let dv = _mm256_set1_ps(d);
                for r in 0..R {
                    let y = a[r].get_unchecked(b);
                    let sy = _mm256_sign_epi8(qy[r], qx);
                    let xy = mul_sum_us8::<D>(ax, sy);
                    let scale = _mm256_mul_ps(dv, _mm256_broadcast_ss(&y.d));
                    acc[i][r] = _mm256_fmadd_ps(scale, xy, acc[i][r]);
                }
            }
        }
        for i in 0..W {
            for r in 0..R {
                out[i][r] = hsum(acc[i][r]);
            }
        }
    }
}
