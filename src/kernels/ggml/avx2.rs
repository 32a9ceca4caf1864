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

/// [`super::fill_task`] with the tile kernels inlined, compiled for `dot`'s instructions;
/// `wide` lets the prefill tiles of the signed types use 512-bit registers (with
/// [`ByteDot::Avx512Vnni`] only; same bits).
///
/// # Safety
/// The CPU has AVX2, FMA and `dot`'s instructions, and with `wide` AVX512F and AVX512BW;
/// [`super::fill_task`]'s contract.
#[allow(clippy::too_many_arguments)]
pub unsafe fn fill_task(
    dot: ByteDot,
    wide: bool,
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
            ByteDot::Avx512Vnni if wide => fill_avx512(kind, w, row_bytes, groups, out, first),
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
    unsafe { fill_with::<MADD>(k, w, rb, g, o, f, false) }
}

/// [`fill_task`] with AVX512-VNNI's `dpbusd` on 256-bit vectors.
///
/// # Safety
/// As [`fill_task`], for AVX2, FMA, AVX512-VNNI and AVX512VL.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn fill_avx512_vnni(k: Kind, w: &[u8], rb: usize, g: &[&[&[Q8Block]]], o: Out, f: usize) {
    // SAFETY: as `fill_task`.
    unsafe { fill_with::<AVX512_VNNI>(k, w, rb, g, o, f, false) }
}

/// [`fill_avx512_vnni`] with the signed types' prefill tiles in 512-bit registers.
///
/// # Safety
/// As [`fill_task`], for AVX2, FMA, AVX512F, AVX512BW, AVX512-VNNI and AVX512VL.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
unsafe fn fill_avx512(k: Kind, w: &[u8], rb: usize, g: &[&[&[Q8Block]]], o: Out, f: usize) {
    // SAFETY: as `fill_task`.
    unsafe { fill_with::<AVX512_VNNI>(k, w, rb, g, o, f, true) }
}

/// [`fill_task`] with AVX-VNNI's `dpbusd`.
///
/// # Safety
/// As [`fill_task`], for AVX2, FMA and AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn fill_avx_vnni(k: Kind, w: &[u8], rb: usize, g: &[&[&[Q8Block]]], o: Out, f: usize) {
    // SAFETY: as `fill_task`.
    unsafe { fill_with::<AVX_VNNI>(k, w, rb, g, o, f, false) }
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
    wide: bool,
) {
    // SAFETY: the callers' contract.
    unsafe {
        // The VNNI kernels of the signed types (see `tile_biased`) take four weight rows. With
        // one activation row (a decode step) the product streams weights: Q4_0 and Q5_0 read
        // them faster with the plain kernel's narrower tiles, Q8_0 (twice the bytes per
        // weight, no unpacking) gains from the biased kernel at its own tile width
        // (docs/PERFORMANCE.md).
        let several = groups.iter().any(|g| g.len() > 1);
        let biased = D != MADD
            && match kind {
                Kind::Q8_0 => true,
                Kind::Q4_0 | Kind::Q5_0 => several,
                _ => false,
            };
        // With several activation rows the signed types' tiles may run two outputs per
        // 512-bit register (`super::avx512`, same bits).
        let wide = wide && D == AVX512_VNNI && biased && several;
        super::fill_tiles(
            if biased && several {
                4
            } else {
                kind.tile_rows()
            },
            w,
            row_bytes,
            groups,
            out,
            first,
            // A closure has no target features of its own, so the intrinsics of a kernel
            // inlined into it would become calls unless the whole build enables AVX2: the
            // closure calls a kernel entry compiled with `D`'s features instead.
            |ws, a, out| match D {
                AVX512_VNNI if wide && super::avx512::takes(ws.len()) => {
                    super::avx512::tile_biased(kind, ws, a, out)
                }
                AVX512_VNNI => tile_avx512_vnni(kind, biased, ws, a, out),
                AVX_VNNI => tile_avx_vnni(kind, biased, ws, a, out),
                _ => tile_madd(kind, false, ws, a, out),
            },
        )
    };
}

/// [`dot_tile`] with `maddubs` + `madd` byte dots.
///
/// # Safety
/// As [`dot_tile`], for AVX2 and FMA.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_madd(kind: Kind, biased: bool, ws: &[&[u8]], a: &[&[Q8Block]], out: &mut Tile) {
    // SAFETY: as `dot_tile`.
    unsafe { dot_tile::<MADD>(kind, biased, ws, a, out) }
}

/// [`dot_tile`] with AVX512-VNNI's `dpbusd` on 256-bit vectors.
///
/// # Safety
/// As [`dot_tile`], for AVX2, FMA, AVX512-VNNI and AVX512VL.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn tile_avx512_vnni(
    kind: Kind,
    biased: bool,
    ws: &[&[u8]],
    a: &[&[Q8Block]],
    out: &mut Tile,
) {
    // SAFETY: as `dot_tile`.
    unsafe { dot_tile::<AVX512_VNNI>(kind, biased, ws, a, out) }
}

/// [`dot_tile`] with AVX-VNNI's `dpbusd`.
///
/// # Safety
/// As [`dot_tile`], for AVX2, FMA and AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn tile_avx_vnni(kind: Kind, biased: bool, ws: &[&[u8]], a: &[&[Q8Block]], out: &mut Tile) {
    // SAFETY: as `dot_tile`.
    unsafe { dot_tile::<AVX_VNNI>(kind, biased, ws, a, out) }
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
            o.s = if kind.has_offset() {
                let s =
                    _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
                let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                let s4 = _mm_hadd_epi32(s4, s4);
                let s4 = _mm_hadd_epi32(s4, s4);
                round_to_f16(d * _mm_cvtsi128_si32(s4) as f32)
            } else {
                0.0
            };
        }
    }
}

/// The block types as const parameters, so that each kernel is compiled once per type.
const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q5_1: u8 = 3;
const Q8_0: u8 = 4;

/// Dispatches a tile to the kernel instantiated for its block type and exact size (the biased
/// VNNI kernel when `biased`; both give the same bits).
///
/// # Safety
/// As [`tile`].
#[inline(always)]
unsafe fn dot_tile<const D: u8>(
    kind: Kind,
    biased: bool,
    ws: &[&[u8]],
    a: &[&[Q8Block]],
    out: &mut Tile,
) {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        macro_rules! sized {
            ($k:ident; $($w:literal, $r:literal);*) => {
                match (ws.len(), a.len()) {
                    $(($w, $r) => tile::<D, $k, $w, $r>(ws, a, out),)*
                    _ => {}
                }
            };
        }
        macro_rules! biased {
            ($k:ident) => {
                match (ws.len(), a.len()) {
                    (1, 1) => tile_biased::<D, $k, 1, 1>(ws, a, out),
                    (1, 2) => tile_biased::<D, $k, 1, 2>(ws, a, out),
                    (1, 3) => tile_biased::<D, $k, 1, 3>(ws, a, out),
                    (1, 4) => tile_biased::<D, $k, 1, 4>(ws, a, out),
                    (2, 1) => tile_biased::<D, $k, 2, 1>(ws, a, out),
                    (2, 2) => tile_biased::<D, $k, 2, 2>(ws, a, out),
                    (2, 3) => tile_biased::<D, $k, 2, 3>(ws, a, out),
                    (2, 4) => tile_biased::<D, $k, 2, 4>(ws, a, out),
                    (3, 1) => tile_biased::<D, $k, 3, 1>(ws, a, out),
                    (3, 2) => tile_biased::<D, $k, 3, 2>(ws, a, out),
                    (3, 3) => tile_biased::<D, $k, 3, 3>(ws, a, out),
                    (3, 4) => tile_biased::<D, $k, 3, 4>(ws, a, out),
                    (4, 1) => tile_biased::<D, $k, 4, 1>(ws, a, out),
                    (4, 2) => tile_biased::<D, $k, 4, 2>(ws, a, out),
                    (4, 3) => tile_biased::<D, $k, 4, 3>(ws, a, out),
                    (4, 4) => tile_biased::<D, $k, 4, 4>(ws, a, out),
                    _ => {}
                }
            };
        }
        macro_rules! typed {
            ($($kind:ident),*) => {
                match kind {
                    Kind::Q4_0 if D != MADD && biased => biased!(Q4_0),
                    Kind::Q5_0 if D != MADD && biased => biased!(Q5_0),
                    Kind::Q8_0 if D != MADD && biased => biased!(Q8_0),
                    $(Kind::$kind => sized!($kind; 1, 1; 1, 2; 1, 3; 1, 4; 2, 1; 2, 2; 2, 3; 2, 4),)*
                }
            };
        }
        typed!(Q4_0, Q4_1, Q5_0, Q5_1, Q8_0);
    }
}

/// The 16 bytes at `p` split into 32 nibbles: low nibbles are elements 0..16, high 16..32.
///
/// # Safety
/// The CPU has AVX2; 16 bytes are readable at `p`.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        let raw = _mm_loadu_si128(p as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }
}

/// The 32 bits at `p` (little-endian) as 32 bytes, 0xFF where the bit is set: bit `j` is
/// element `j`. Each byte gets its bit's 32-bit word byte by a shuffle, every other bit set by
/// an OR, and a compare with all-ones keeps the bytes whose own bit was set.
///
/// # Safety
/// The CPU has AVX2; 4 bytes are readable at `p`.
#[inline(always)]
unsafe fn bit_bytes(p: *const u8) -> __m256i {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        let word = std::ptr::read_unaligned(p as *const i32);
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(word),
            _mm256_set_epi64x(
                0x0303030303030303,
                0x0202020202020202,
                0x0101010101010101,
                0,
            ),
        );
        let others = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
        _mm256_cmpeq_epi8(others, _mm256_set1_epi64x(-1))
    }
}

/// A weight block's 32 values as bytes, in element order: signed for Q4_0, Q5_0 and Q8_0
/// (their offsets of 8 and 16 already taken off), unsigned for Q4_1 and Q5_1.
///
/// # Safety
/// The CPU has AVX2; `blk` is one whole block of type `K`.
#[inline(always)]
unsafe fn unpack<const K: u8>(blk: &[u8]) -> __m256i {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        let p = blk.as_ptr();
        match K {
            Q4_0 => _mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8)),
            Q4_1 => nibbles(p.add(4)),
            // A clear fifth bit puts 0xF0 on top of the nibble: the value minus 16.
            Q5_0 => _mm256_or_si256(
                nibbles(p.add(6)),
                _mm256_andnot_si256(bit_bytes(p.add(2)), _mm256_set1_epi8(0xF0u8 as i8)),
            ),
            Q5_1 => _mm256_or_si256(
                nibbles(p.add(8)),
                _mm256_and_si256(bit_bytes(p.add(4)), _mm256_set1_epi8(0x10)),
            ),
            _ => _mm256_loadu_si256(p.add(2) as *const __m256i),
        }
    }
}

/// [`tile`] for the signed types (Q4_0, Q5_0, Q8_0) with a VNNI `dpbusd`, the same integers by
/// another route: ggml multiplies `|x|` by `y` carrying `x`'s sign, per (weight row,
/// activation row) pair; here the weights are made unsigned once per block by their bias `c`
/// (8, 16, 128: `x + c` is the stored nibble, the nibble and fifth bit, or `x ^ 0x80`), and
/// each pair's `dpbusd` starts from `-c · Σy` (per 4-byte lane, once per activation block), so
/// every lane ends at `Σ x·y` exactly as ggml's, then the same conversion, scale and
/// multiply-add. One instruction per pair instead of two.
///
/// # Safety
/// As [`tile`], with `D` a VNNI choice.
#[inline(always)]
unsafe fn tile_biased<const D: u8, const K: u8, const W: usize, const R: usize>(
    ws: &[&[u8]],
    a: &[&[Q8Block]],
    out: &mut Tile,
) {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        let (bytes, bias) = match K {
            Q4_0 => (18, 8u8),
            Q5_0 => (22, 16),
            _ => (34, 128),
        };
        let nb = a[0].len();
        assert!(a.len() == R && ws.len() == W);
        assert!(a.iter().all(|r| r.len() == nb) && ws.iter().all(|w| w.len() == nb * bytes));
        let dpbusd = |src: __m256i, u: __m256i, s: __m256i| match D {
            AVX512_VNNI => _mm256_dpbusd_epi32(src, u, s),
            _ => _mm256_dpbusd_avx_epi32(src, u, s),
        };
        let cv = _mm256_set1_epi8(bias as i8);
        let mut acc = [[_mm256_setzero_ps(); R]; W];
        for b in 0..nb {
            let mut qy = [_mm256_setzero_si256(); R];
            let mut base = [_mm256_setzero_si256(); R];
            let mut dy = [_mm256_setzero_ps(); R];
            for r in 0..R {
                let y = a[r].get_unchecked(b);
                qy[r] = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                let c_sum = dpbusd(_mm256_setzero_si256(), cv, qy[r]);
                base[r] = _mm256_sub_epi32(_mm256_setzero_si256(), c_sum);
                dy[r] = _mm256_broadcast_ss(&y.d);
            }
            for i in 0..W {
                let blk = ws[i].get_unchecked(b * bytes..(b + 1) * bytes);
                _mm_prefetch::<_MM_HINT_T0>(blk.as_ptr().wrapping_add(PREFETCH_BYTES) as *const i8);
                let p = blk.as_ptr();
                let ux = match K {
                    Q4_0 => nibbles(p.add(2)),
                    Q5_0 => _mm256_or_si256(
                        nibbles(p.add(6)),
                        _mm256_and_si256(bit_bytes(p.add(2)), _mm256_set1_epi8(0x10)),
                    ),
                    _ => _mm256_xor_si256(
                        _mm256_loadu_si256(p.add(2) as *const __m256i),
                        _mm256_set1_epi8(0x80u8 as i8),
                    ),
                };
                let dv = _mm256_set1_ps(f16_at_f16c(blk, 0));
                for r in 0..R {
                    let xy = _mm256_cvtepi32_ps(dpbusd(base[r], ux, qy[r]));
                    acc[i][r] = _mm256_fmadd_ps(_mm256_mul_ps(dv, dy[r]), xy, acc[i][r]);
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

/// ggml's AVX2 `ggml_vec_dot_{q4_0,q5_0,q8_0}_q8_0` and `{q4_1,q5_1}_q8_1` for a `W × R`
/// tile: per pair, `acc = fma(d · d_y, Σx·y, acc)` block by block (signed weights multiply
/// through `|x|` with the sign moved onto `y`), for the offset types also `summs += m · s`,
/// then `hsum(acc) + summs`. llamafile's tinyBLAS, which llama.cpp runs for batches of Q4_0,
/// Q5_0 and Q8_0, accumulates in the same order, so one kernel serves decode and prefill.
///
/// # Safety
/// The CPU has AVX2, FMA and `D`'s instructions. (Reads are bounds-checked by the asserts
/// at the top.)
#[inline(always)]
unsafe fn tile<const D: u8, const K: u8, const W: usize, const R: usize>(
    ws: &[&[u8]],
    a: &[&[Q8Block]],
    out: &mut Tile,
) {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        let bytes = match K {
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            _ => 34,
        };
        let offset = matches!(K, Q4_1 | Q5_1);
        // The unchecked reads below stay inside these bounds.
        let nb = a[0].len();
        assert!(a.len() == R && ws.len() == W);
        assert!(a.iter().all(|r| r.len() == nb) && ws.iter().all(|w| w.len() == nb * bytes));
        let mut acc = [[_mm256_setzero_ps(); R]; W];
        // `summs` of every activation row side by side: lane r is row r's scalar sum.
        let mut summs = [_mm_setzero_ps(); W];
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
                let blk = ws[i].get_unchecked(b * bytes..(b + 1) * bytes);
                _mm_prefetch::<_MM_HINT_T0>(blk.as_ptr().wrapping_add(PREFETCH_BYTES) as *const i8);
                let d = f16_at_f16c(blk, 0);
                if offset {
                    let m = f16_at_f16c(blk, 2);
                    summs[i] = _mm_add_ps(summs[i], _mm_mul_ps(_mm_set1_ps(m), sy));
                }
                let qx = unpack::<K>(blk);
                let ax = if offset { qx } else { _mm256_sign_epi8(qx, qx) };
                let dv = _mm256_set1_ps(d);
                for r in 0..R {
                    let y = a[r].get_unchecked(b);
                    let sy = if offset {
                        qy[r]
                    } else {
                        _mm256_sign_epi8(qy[r], qx)
                    };
                    let xy = mul_sum_us8::<D>(ax, sy);
                    let scale = _mm256_mul_ps(dv, _mm256_broadcast_ss(&y.d));
                    acc[i][r] = _mm256_fmadd_ps(scale, xy, acc[i][r]);
                }
            }
        }
        for i in 0..W {
            let mut s = [0f32; 4];
            _mm_storeu_ps(s.as_mut_ptr(), summs[i]);
            for r in 0..R {
                out[i][r] = if offset {
                    hsum(acc[i][r]) + s[r]
                } else {
                    hsum(acc[i][r])
                };
            }
        }
    }
}
