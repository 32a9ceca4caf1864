//! 512-bit prefill tiles for the signed block types (Q4_0, Q5_0, Q8_0) on CPUs with AVX-512
//! (F, BW, VL) and AVX512-VNNI, chosen at run time by the caller.
//!
//! Every output's summation order is fixed by ggml's 8-lane AVX2 kernel (the bits we match),
//! so one output never spans 16 lanes: each zmm register holds two outputs side by side, the
//! low eight lanes one weight row's, the high eight the next row's, both against the same
//! activation row (broadcast to both halves). Every lane then goes through exactly the
//! instructions of [`super::avx2`]'s `tile_biased` for its output, and each half is reduced
//! with the same [`hsum`]: the same bits, half the instructions on CPUs that run 512-bit
//! vectors at full width.

use super::{Kind, Q8Block, Tile};
use crate::kernels::simd::{f16_bits_to_f32, hsum, PREFETCH_BYTES};
use std::arch::x86_64::*;

/// Whether [`tile_biased`] takes a tile of `weight_rows` rows (pairs of rows, at most four).
pub fn takes(weight_rows: usize) -> bool {
    weight_rows == 2 || weight_rows == 4
}

/// The product of the weight rows `ws` (2 or 4, see [`takes`]) with up to four activation
/// rows `a`, into `out[weight row][activation row]`, for a signed block type.
///
/// # Safety
/// The CPU has AVX2, FMA, F16C, AVX512F, AVX512BW, AVX512VL and AVX512-VNNI; `kind` is Q4_0,
/// Q5_0 or Q8_0. (Reads are bounds-checked by the kernel's asserts.)
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile_biased(kind: Kind, ws: &[&[u8]], a: &[&[Q8Block]], out: &mut Tile) {
    macro_rules! sized {
        ($k:ident) => {
            match (ws.len() / 2, a.len()) {
                (1, 1) => tile::<$k, 1, 1>(ws, a, out),
                (1, 2) => tile::<$k, 1, 2>(ws, a, out),
                (1, 3) => tile::<$k, 1, 3>(ws, a, out),
                (1, 4) => tile::<$k, 1, 4>(ws, a, out),
                (2, 1) => tile::<$k, 2, 1>(ws, a, out),
                (2, 2) => tile::<$k, 2, 2>(ws, a, out),
                (2, 3) => tile::<$k, 2, 3>(ws, a, out),
                (2, 4) => tile::<$k, 2, 4>(ws, a, out),
                _ => {}
            }
        };
    }
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        match kind {
            Kind::Q4_0 => sized!(Q4_0),
            Kind::Q5_0 => sized!(Q5_0),
            Kind::Q8_0 => sized!(Q8_0),
            _ => {}
        }
    }
}

const Q4_0: u8 = 0;
const Q5_0: u8 = 2;
const Q8_0: u8 = 4;

/// Two weight blocks' values plus their bias as unsigned bytes, the block at `lo` in bytes
/// 0..32 and the one at `hi` in 32..64 (each in element order), built in 512-bit registers:
/// both blocks' nibbles split at once, and Q5_0's fifth bits (one bit per element, as a byte
/// mask) added by one masked add.
///
/// # Safety
/// The CPU has AVX512F and AVX512BW; `lo` and `hi` each point at one whole block of type `K`.
#[inline(always)]
unsafe fn unsigned_pair<const K: u8>(lo: *const u8, hi: *const u8) -> __m512i {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe {
        if K == Q8_0 {
            return _mm512_xor_si512(
                join(
                    _mm256_loadu_si256(lo.add(2) as *const __m256i),
                    _mm256_loadu_si256(hi.add(2) as *const __m256i),
                ),
                _mm512_set1_epi8(0x80u8 as i8),
            );
        }
        let at = if K == Q5_0 { 6 } else { 2 };
        // [lo's 16 bytes, hi's 16 bytes] to [lo, lo, hi, hi] by 128-bit lanes; the second
        // and fourth shifted down a nibble: low nibbles of each block, then its high ones.
        let both = _mm256_loadu2_m128i(hi.add(at) as *const __m128i, lo.add(at) as *const __m128i);
        let spread = _mm512_permutexvar_epi64(
            _mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0),
            _mm512_castsi256_si512(both),
        );
        let shifted = _mm512_mask_srli_epi16::<4>(spread, 0xFF00_FF00, spread);
        let nib = _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F));
        if K == Q5_0 {
            let bits = |p: *const u8| u64::from(std::ptr::read_unaligned(p.add(2) as *const u32));
            let k = bits(lo) | bits(hi) << 32;
            _mm512_mask_add_epi8(nib, k, nib, _mm512_set1_epi8(0x10))
        } else {
            nib
        }
    }
}

/// Two 256-bit halves as one 512-bit register, `lo` in lanes 0..8.
///
/// # Safety
/// The CPU has AVX512F.
#[inline(always)]
unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
    // SAFETY: this function's `# Safety` contract, which the caller upholds.
    unsafe { _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi) }
}

/// `P` pairs of weight rows by `R` activation rows. Per block and pair: both rows' bytes made
/// unsigned and joined, both rows' scales in their halves; per activation row, its bytes in
/// both halves and `-c·Σy` per 4-byte lane as the `dpbusd` start, as the 256-bit kernel does.
///
/// # Safety
/// As [`tile_biased`]; `ws.len() == 2 * P`, `a.len() == R` (asserted).
#[inline(always)]
unsafe fn tile<const K: u8, const P: usize, const R: usize>(
    ws: &[&[u8]],
    a: &[&[Q8Block]],
    out: &mut Tile,
) {
    // SAFETY: this function's `# Safety` contract, which the caller upholds; every read below
    // is inside a block the asserts cover.
    unsafe {
        let (bytes, bias) = match K {
            Q4_0 => (18, 8u8),
            Q5_0 => (22, 16),
            _ => (34, 128),
        };
        let nb = a[0].len();
        assert!(a.len() == R && ws.len() == 2 * P);
        assert!(a.iter().all(|r| r.len() == nb) && ws.iter().all(|w| w.len() == nb * bytes));
        let cv = _mm512_set1_epi8(bias as i8);
        let mut acc = [[_mm512_setzero_ps(); R]; P];
        for b in 0..nb {
            let mut qy = [_mm512_setzero_si512(); R];
            let mut base = [_mm512_setzero_si512(); R];
            let mut dy = [_mm512_setzero_ps(); R];
            for r in 0..R {
                let y = a[r].get_unchecked(b);
                let q = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                qy[r] = join(q, q);
                let c_sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), cv, qy[r]);
                base[r] = _mm512_sub_epi32(_mm512_setzero_si512(), c_sum);
                dy[r] = _mm512_set1_ps(y.d);
            }
            for p in 0..P {
                let lo = ws[2 * p].as_ptr().add(b * bytes);
                let hi = ws[2 * p + 1].as_ptr().add(b * bytes);
                _mm_prefetch::<_MM_HINT_T0>(lo.wrapping_add(PREFETCH_BYTES) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(hi.wrapping_add(PREFETCH_BYTES) as *const i8);
                let ux = unsigned_pair::<K>(lo, hi);
                let d_lo = f16_bits_to_f32(std::ptr::read_unaligned(lo as *const u16));
                let d_hi = f16_bits_to_f32(std::ptr::read_unaligned(hi as *const u16));
                let dv = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                    _mm512_castps_pd(_mm512_set1_ps(d_lo)),
                    _mm256_castps_pd(_mm256_set1_ps(d_hi)),
                ));
                for r in 0..R {
                    let xy = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(base[r], ux, qy[r]));
                    acc[p][r] = _mm512_fmadd_ps(_mm512_mul_ps(dv, dy[r]), xy, acc[p][r]);
                }
            }
        }
        for p in 0..P {
            for r in 0..R {
                let v = acc[p][r];
                out[2 * p][r] = hsum(_mm512_castps512_ps256(v));
                out[2 * p + 1][r] = hsum(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(v),
                )));
            }
        }
    }
}
