//! Q4_0 products in the order of llama.cpp's *repacked* kernels, which llama.cpp 0.3.36 runs by
//! default on AVX2 for every Q4_0 and Q4_K matrix whose row count is a multiple of 8
//! (`ggml-cpu/repack.cpp`, `q4_0_8x8_q8_0`: the weights of 8 rows interleaved so that one
//! vector holds one block of each). Its gemv (one activation row) and gemm (groups of 4) sum
//! the same way for every output: the block's integer dot, as f32, times `d_w·d_a`, fused-added
//! into one f32 accumulator, block after block. The plain `vec_dot` keeps eight partial sums
//! per output and adds them at the end, so the two differ in the last bits (and, through the
//! next layer's int8 rounding, visibly in log-probs; docs/TESTING.md). Q4_K's repacked order
//! is in `kquant` ([`super::kquant::dot_rows_repacked`]), beside its plain kernels.
//!
//! We keep the file's layout (the weights stay in the memory map) and gather the 8 rows' blocks
//! in registers instead: the integer dots are exact, so only the float order above matters.

use super::{Format, Kind, Out, Q8Block, TILE_R};
use crate::kernels::ggml::kquant::KQuant;

/// Weight rows a repacked matrix interleaves; llama.cpp repacks only matrices with a multiple of
/// this many rows.
pub(super) const ROWS: usize = 8;

/// Whether llama.cpp would repack a `format` matrix of `rows` rows (on AVX2; its Q2_K repacking
/// needs AVX-512, IQ4_NL is not a type we compute).
pub(super) fn applies(format: Format, rows: usize) -> bool {
    matches!(format, Format::Block(Kind::Q4_0) | Format::K(KQuant::Q4K))
        && rows.is_multiple_of(ROWS)
}

/// `8·Σy` of every activation block, row after row: what the SIMD kernel takes off its
/// unsigned-nibble dots. Computed once per product, for all its tasks.
pub(super) fn biases(rows: &[&[Q8Block]]) -> Vec<i32> {
    rows.iter()
        .flat_map(|a| a.iter())
        .map(|y| 8 * y.qs.iter().map(|&q| i32::from(q)).sum::<i32>())
        .collect()
}

/// Writes the outputs of the Q4_0 weight rows in `w` (a multiple of [`ROWS`] rows; columns
/// `first..` of `out`) for every activation row of `groups`, in the repacked order. `bias`
/// is [`biases`] of the activation rows.
///
/// # Safety
/// As [`Out::write`] for columns `first..first + w.len() / row_bytes` and the rows in `groups`;
/// `bias` holds one value per activation block of `groups`.
pub(super) unsafe fn fill_task(
    w: &[u8],
    row_bytes: usize,
    groups: &[&[&[Q8Block]]],
    bias: &[i32],
    out: Out,
    first: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(dot) = crate::kernels::simd::byte_dot() {
            // SAFETY: the CPU has AVX2, FMA, F16C and `dot`'s instructions (`byte_dot`
            // checked them); the caller's contract covers the writes.
            unsafe { avx2::fill_task(dot, w, row_bytes, groups, bias, out, first) };
            return;
        }
    }
    let _ = bias; // the portable order works on signed values
    for (j, wrow) in w.chunks_exact(row_bytes).enumerate() {
        for (g, group) in groups.iter().enumerate() {
            for (r, a) in group.iter().enumerate() {
                // SAFETY: the caller's contract.
                unsafe { out.write(g * TILE_R + r, first + j, dot_scalar(wrow, a)) };
            }
        }
    }
}

/// One output in the repacked order, portably (`f32::mul_add` is the fused multiply-add).
fn dot_scalar(w: &[u8], a: &[Q8Block]) -> f32 {
    let kind = Kind::Q4_0;
    let mut acc = 0f32;
    for (blk, y) in w.chunks_exact(kind.block_bytes()).zip(a) {
        let (d, _) = kind.scales(blk);
        acc = (kind.int_dot(blk, y) as f32).mul_add(d * y.d, acc);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Out, Q8Block, ROWS, TILE_R};
    use crate::kernels::simd::ByteDot;
    use std::arch::x86_64::*;

    const BLOCK: usize = 18; // Q4_0: d (f16), 16 bytes of nibbles

    /// How a row pair's byte products are summed (a [`ByteDot`] as a const parameter, so
    /// that the kernel is compiled once per instruction choice).
    const MADD: u8 = 0;
    const AVX512_VNNI: u8 = 1;
    const AVX_VNNI: u8 = 2;

    /// Which weight row each lane of a tile's result holds: the order the `hadd` tree in
    /// [`fill_with`] leaves them in. The scales are gathered in this order and the outputs
    /// written back through it, so no lane is ever moved.
    const LANE_ROW: [usize; ROWS] = [0, 2, 4, 6, 1, 3, 5, 7];

    /// [`LANE_ROW`] for [`fill_avx512`]'s reduction.
    const LANE_ROW_512: [usize; ROWS] = [0, 4, 1, 5, 2, 6, 3, 7];

    /// How many tiles ahead the weights are prefetched (2 measured faster than 1 in decode;
    /// docs/PERFORMANCE.md).
    const AHEAD_TILES: usize = 2;

    /// [`super::fill_task`] on AVX2 with `dot`'s byte products.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA, F16C and `dot`'s instructions; [`super::fill_task`]'s contract.
    pub(super) unsafe fn fill_task(
        dot: ByteDot,
        w: &[u8],
        row_bytes: usize,
        groups: &[&[&[Q8Block]]],
        bias: &[i32],
        out: Out,
        first: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            match dot {
                ByteDot::Madd => fill_madd(w, row_bytes, groups, bias, out, first),
                ByteDot::Avx512Vnni if groups.len() > 1 && crate::kernels::simd::avx512() => {
                    fill_avx512(w, row_bytes, groups, bias, out, first)
                }
                ByteDot::Avx512Vnni => fill_avx512_vnni(w, row_bytes, groups, bias, out, first),
                ByteDot::AvxVnni => fill_avx_vnni(w, row_bytes, groups, bias, out, first),
            }
        }
    }

    /// [`fill_task`] with `maddubs` + `madd`.
    ///
    /// # Safety
    /// As [`fill_task`], for AVX2 and FMA.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn fill_madd(w: &[u8], rb: usize, g: &[&[&[Q8Block]]], c: &[i32], o: Out, f: usize) {
        // SAFETY: as `fill_task`.
        unsafe { fill_with::<MADD>(w, rb, g, c, o, f) }
    }

    /// [`fill_task`] with AVX512-VNNI's `dpbusd` on 256-bit vectors.
    ///
    /// # Safety
    /// As [`fill_task`], for AVX2, FMA, AVX512-VNNI and AVX512VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn fill_avx512_vnni(
        w: &[u8],
        rb: usize,
        g: &[&[&[Q8Block]]],
        c: &[i32],
        o: Out,
        f: usize,
    ) {
        // SAFETY: as `fill_task`.
        unsafe { fill_with::<AVX512_VNNI>(w, rb, g, c, o, f) }
    }

    /// [`fill_with`]'s sums for several activation groups (prefill) in 512-bit registers: four
    /// weight rows' blocks per register (one per 128-bit lane), so a block's 8 rows take 4
    /// `dpbusd` per activation row instead of 8, and their partial sums are reduced by two
    /// interleaves and a narrowing move instead of the `hadd` tree. The integer dots are the
    /// same (integer sums are exact in any order) and every float step per output is
    /// [`fill_with`]'s, so the outputs are the same bits; the reduction leaves the rows in
    /// [`LANE_ROW_512`]'s order.
    ///
    /// # Safety
    /// As [`fill_task`], for AVX2, FMA, F16C, AVX512 F, BW, VL and VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn fill_avx512(
        w: &[u8],
        row_bytes: usize,
        groups: &[&[&[Q8Block]]],
        bias: &[i32],
        dst: Out,
        first: usize,
    ) {
        let (rows, blocks) = shape(w, row_bytes, groups, bias);
        // SAFETY: every read is inside `w` (rows `j..j + 8`, blocks `< blocks`) or inside an
        // activation row's `blocks` blocks; the writes are the caller's contract.
        unsafe {
            let low = _mm512_set1_epi8(0x0F);
            for j in (0..rows).step_by(ROWS) {
                let base = w.as_ptr().add(j * row_bytes);
                for (g, acts) in groups.iter().enumerate() {
                    let mut acc = [_mm256_setzero_ps(); TILE_R];
                    for b in 0..blocks {
                        prefetch_ahead(base, row_bytes, b);
                        let at = |r: usize| base.add(r * row_bytes + b * BLOCK);
                        let dw = scales(base, row_bytes, b, &LANE_ROW_512);
                        // Rows 4h..4h + 4, one per 128-bit lane.
                        let quad = |h: usize| {
                            let q = |r: usize| at(4 * h + r).add(2) as *const __m128i;
                            let lo = _mm256_loadu2_m128i(q(1), q(0));
                            let hi = _mm256_loadu2_m128i(q(3), q(2));
                            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
                        };
                        let z = [quad(0), quad(1)];
                        let lo = z.map(|v| _mm512_and_si512(v, low));
                        let hi = z.map(|v| _mm512_and_si512(_mm512_srli_epi16::<4>(v), low));
                        for (i, a) in acts.iter().enumerate() {
                            let y = a.get_unchecked(b);
                            let q = y.qs.as_ptr() as *const __m128i;
                            let ylo = _mm512_broadcast_i32x4(_mm_loadu_si128(q));
                            let yhi = _mm512_broadcast_i32x4(_mm_loadu_si128(q.add(1)));
                            let s: [__m512i; 2] = std::array::from_fn(|h| {
                                let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[h], ylo);
                                _mm512_dpbusd_epi32(s, hi[h], yhi)
                            });
                            // Per 128-bit lane l: [a0 + a2, a1 + a3, b0 + b2, b1 + b3] for rows
                            // a = l, b = 4 + l; then [A, A, B, B]; the low halves of its 64-bit
                            // words are A, B.
                            let x = _mm512_add_epi32(
                                _mm512_unpacklo_epi64(s[0], s[1]),
                                _mm512_unpackhi_epi64(s[0], s[1]),
                            );
                            let x = _mm512_add_epi32(x, _mm512_shuffle_epi32::<0xB1>(x));
                            let h = _mm512_cvtepi64_epi32(x);
                            let c = *bias.get_unchecked((g * TILE_R + i) * blocks + b);
                            acc[i] = accumulate(acc[i], h, c, dw, y.d);
                        }
                    }
                    write_tile(
                        &acc[..acts.len()],
                        &LANE_ROW_512,
                        dst,
                        g * TILE_R,
                        first + j,
                    );
                }
            }
        }
    }

    /// [`fill_task`] with AVX-VNNI's `dpbusd`.
    ///
    /// # Safety
    /// As [`fill_task`], for AVX2, FMA and AVX-VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    unsafe fn fill_avx_vnni(w: &[u8], rb: usize, g: &[&[&[Q8Block]]], c: &[i32], o: Out, f: usize) {
        // SAFETY: as `fill_task`.
        unsafe { fill_with::<AVX_VNNI>(w, rb, g, c, o, f) }
    }

    /// The weight rows and blocks per row of a task, checked against the activations' biases
    /// (the bound the kernels' unchecked reads rely on).
    fn shape(w: &[u8], row_bytes: usize, groups: &[&[&[Q8Block]]], bias: &[i32]) -> (usize, usize) {
        let rows = w.len() / row_bytes;
        let blocks = row_bytes / BLOCK;
        debug_assert!(rows.is_multiple_of(ROWS) && blocks * BLOCK == row_bytes);
        let acts: usize = groups.iter().map(|g| g.len()).sum();
        assert_eq!(bias.len(), acts * blocks, "one bias per activation block");
        (rows, blocks)
    }

    /// Asks for block `b` of the tile [`AHEAD_TILES`] after the one at `base`. The tile walks
    /// 8 rows side by side, a pattern the hardware prefetchers follow poorly, so 8 blocks'
    /// worth are fetched per block. `wrapping_add`: the last tiles' hints point past the
    /// weights, which a prefetch may.
    ///
    /// # Safety
    /// SSE (a prefetch never faults).
    #[inline(always)]
    unsafe fn prefetch_ahead(base: *const u8, row_bytes: usize, b: usize) {
        let ahead = base.wrapping_add(AHEAD_TILES * ROWS * row_bytes + b * ROWS * BLOCK);
        for l in 0..3 {
            // SAFETY: prefetching reads nothing architecturally.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * l) as *const i8) };
        }
    }

    /// The f16 scales of block `b` of the 8 rows at `base`, lane `l` holding row `order[l]`'s.
    ///
    /// # Safety
    /// AVX2 and F16C; the 8 rows of `row_bytes` at `base` hold block `b`.
    #[inline(always)]
    unsafe fn scales(base: *const u8, row_bytes: usize, b: usize, order: &[usize; ROWS]) -> __m256 {
        // SAFETY: this function's contract.
        unsafe {
            let d = |l: usize| {
                let p = base.add(order[l] * row_bytes + b * BLOCK);
                i16::from_le_bytes([*p, *p.add(1)])
            };
            _mm256_cvtph_ps(_mm_setr_epi16(
                d(0),
                d(1),
                d(2),
                d(3),
                d(4),
                d(5),
                d(6),
                d(7),
            ))
        }
    }

    /// One block's float step for 8 outputs: the exact integer dots `h` less the bias `c`,
    /// converted, fused-added with `d_w·d_y` into `acc`.
    ///
    /// # Safety
    /// AVX2 and FMA.
    #[inline(always)]
    unsafe fn accumulate(acc: __m256, h: __m256i, c: i32, dw: __m256, dy: f32) -> __m256 {
        // SAFETY: this function's contract.
        unsafe {
            let h = _mm256_sub_epi32(h, _mm256_set1_epi32(c));
            let d = _mm256_mul_ps(dw, _mm256_set1_ps(dy));
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), d, acc)
        }
    }

    /// Writes activation row `row0 + i`'s 8 outputs `acc[i]` (lane `l` is weight row
    /// `col0 + order[l]`).
    ///
    /// # Safety
    /// AVX; as [`Out::write`] for those cells.
    #[inline(always)]
    unsafe fn write_tile(
        acc: &[__m256],
        order: &[usize; ROWS],
        dst: Out,
        row0: usize,
        col0: usize,
    ) {
        for (i, acc) in acc.iter().enumerate() {
            let mut v = [0f32; ROWS];
            // SAFETY: `v` holds 8 floats; the writes are the caller's contract.
            unsafe {
                _mm256_storeu_ps(v.as_mut_ptr(), *acc);
                for (l, &v) in v.iter().enumerate() {
                    dst.write(row0 + i, col0 + order[l], v);
                }
            }
        }
    }

    /// The byte dots of two weight rows' blocks (row `2k` in the low 128-bit lane, `2k + 1` in
    /// the high one, as unsigned nibbles: elements 0..16 in `lo`, 16..32 in `hi`) with one
    /// activation block (`ylo`, `yhi`: its bytes 0..16 and 16..32 in both lanes), as four
    /// partial sums per row. `maddubs` cannot saturate: a pair is at most 2·15·128.
    ///
    /// # Safety
    /// The CPU has AVX2 and `D`'s instructions.
    #[inline(always)]
    unsafe fn pair_dot<const D: u8>(
        lo: __m256i,
        hi: __m256i,
        ylo: __m256i,
        yhi: __m256i,
    ) -> __m256i {
        // SAFETY: this function's `# Safety` contract, which the caller upholds.
        unsafe {
            match D {
                AVX512_VNNI => {
                    let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, ylo);
                    _mm256_dpbusd_epi32(s, hi, yhi)
                }
                AVX_VNNI => {
                    let s = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), lo, ylo);
                    _mm256_dpbusd_avx_epi32(s, hi, yhi)
                }
                _ => {
                    let s = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo, ylo),
                        _mm256_maddubs_epi16(hi, yhi),
                    );
                    _mm256_madd_epi16(s, _mm256_set1_epi16(1))
                }
            }
        }
    }

    /// Per tile of 8 weight rows and up to 4 activation rows: each block's 8 integer dots,
    /// exactly (the nibbles are used unsigned, `x + 8`, and `8·Σy` taken off afterwards, as
    /// integers), converted to f32, then one fused multiply-add per output with `d_w·d_a`, as
    /// llama.cpp's repacked kernels do.
    ///
    /// # Safety
    /// As [`fill_task`], for `D`'s instructions.
    #[inline(always)]
    unsafe fn fill_with<const D: u8>(
        w: &[u8],
        row_bytes: usize,
        groups: &[&[&[Q8Block]]],
        bias: &[i32],
        dst: Out,
        first: usize,
    ) {
        let (rows, blocks) = shape(w, row_bytes, groups, bias);
        // SAFETY: every read is inside `w` (rows `j..j + 8`, blocks `< blocks`) or inside an
        // activation row's `blocks` blocks; the writes are the caller's contract.
        unsafe {
            let low = _mm256_set1_epi8(0x0F);
            for j in (0..rows).step_by(ROWS) {
                let base = w.as_ptr().add(j * row_bytes);
                for (g, acts) in groups.iter().enumerate() {
                    let mut acc = [_mm256_setzero_ps(); TILE_R];
                    for b in 0..blocks {
                        prefetch_ahead(base, row_bytes, b);
                        let at = |r: usize| base.add(r * row_bytes + b * BLOCK);
                        let dw = scales(base, row_bytes, b, &LANE_ROW);
                        let mut lo = [_mm256_setzero_si256(); ROWS / 2];
                        let mut hi = [_mm256_setzero_si256(); ROWS / 2];
                        for k in 0..ROWS / 2 {
                            let v = _mm256_loadu2_m128i(
                                at(2 * k + 1).add(2) as *const __m128i,
                                at(2 * k).add(2) as *const __m128i,
                            );
                            lo[k] = _mm256_and_si256(v, low);
                            hi[k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                        }
                        for (i, a) in acts.iter().enumerate() {
                            let y = a.get_unchecked(b);
                            let q = y.qs.as_ptr() as *const __m128i;
                            let ylo = _mm256_broadcastsi128_si256(_mm_loadu_si128(q));
                            let yhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(q.add(1)));
                            let s: [__m256i; ROWS / 2] =
                                std::array::from_fn(|k| pair_dot::<D>(lo[k], hi[k], ylo, yhi));
                            let h = _mm256_hadd_epi32(
                                _mm256_hadd_epi32(s[0], s[1]),
                                _mm256_hadd_epi32(s[2], s[3]),
                            );
                            let c = *bias.get_unchecked((g * TILE_R + i) * blocks + b);
                            acc[i] = accumulate(acc[i], h, c, dw, y.d);
                        }
                    }
                    write_tile(&acc[..acts.len()], &LANE_ROW, dst, g * TILE_R, first + j);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ggml::quantize_row;
    use crate::kernels::test_values as values;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn q4_0(n: usize, k: usize, seed: u32) -> Vec<u8> {
        let w = Tensor::from_vec(values(n * k, seed), (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&w, GgmlDType::Q4_0)
            .unwrap()
            .data()
            .unwrap()
            .into_owned()
    }

    /// The SIMD kernel gives the portable order's outputs bit for bit, for every group size,
    /// with extreme activations (±127 bytes) and all-zero blocks.
    #[test]
    fn simd_equals_scalar_bit_for_bit() {
        let (n, k) = (24, 320);
        let w = q4_0(n, k, 3);
        let row_bytes = w.len() / n;
        for m in 1..=6 {
            let mut x = values(m * k, 9);
            x[5] = 50.0;
            let last = x.len() - 1;
            x[k.min(last)] = -50.0;
            x[64..96].fill(0.0);
            let acts: Vec<Q8Block> = x
                .chunks(k)
                .flat_map(|r| quantize_row(r, Kind::Q4_0))
                .collect();
            let rows: Vec<&[Q8Block]> = acts.chunks(k / 32).collect();
            let groups: Vec<&[&[Q8Block]]> = rows.chunks(TILE_R).collect();
            let bias = biases(&rows);
            for dot in dots() {
                let mut got = vec![0f32; m * n];
                let out = Out::new(got.as_mut_ptr(), n);
                // SAFETY: one call writes every output of `got`; `dots` lists only the
                // instructions this CPU has.
                unsafe {
                    match dot {
                        #[cfg(target_arch = "x86_64")]
                        Some(d) => avx2::fill_task(d, &w, row_bytes, &groups, &bias, out, 0),
                        _ => fill_task(&w, row_bytes, &groups, &bias, out, 0),
                    }
                };
                for (i, a) in rows.iter().enumerate() {
                    for (j, wrow) in w.chunks_exact(row_bytes).enumerate() {
                        let want = dot_scalar(wrow, a);
                        let got = got[i * n + j];
                        assert_eq!(got.to_bits(), want.to_bits(), "{dot:?} m {m} [{i},{j}]");
                    }
                }
            }
        }
    }

    /// The kernels to compare: the dispatched one, and on x86 every byte-dot instruction this
    /// CPU has.
    fn dots() -> Vec<Option<crate::kernels::simd::ByteDot>> {
        #[allow(unused_mut)]
        let mut dots = vec![None];
        #[cfg(target_arch = "x86_64")]
        {
            use crate::kernels::simd::ByteDot;
            if crate::kernels::simd::byte_dot().is_some() {
                dots.push(Some(ByteDot::Madd));
                if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                    dots.push(Some(ByteDot::Avx512Vnni));
                }
                if is_x86_feature_detected!("avxvnni") {
                    dots.push(Some(ByteDot::AvxVnni));
                }
            }
        }
        dots
    }

    /// The repacked order is a reordering of the plain product's sums: equal up to rounding.
    #[test]
    fn repacked_order_is_the_plain_product_up_to_rounding() {
        let (n, k) = (8, 4096);
        let w = q4_0(n, k, 5);
        let row_bytes = w.len() / n;
        let a = quantize_row(&values(k, 1), Kind::Q4_0);
        for wrow in w.chunks_exact(row_bytes) {
            let (rep, plain) = (
                dot_scalar(wrow, &a),
                super::super::dot_scalar(Kind::Q4_0, wrow, &a),
            );
            assert!(
                (rep - plain).abs() <= 1e-4 * plain.abs().max(1.0),
                "{rep} vs {plain}"
            );
        }
    }
}
