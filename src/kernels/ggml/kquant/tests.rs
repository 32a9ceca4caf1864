//! Tests of the K-quant kernels: against dequantized weights (candle's blocks), against a
//! scalar model of ggml's AVX2 lanes, between the SIMD and the portable kernels, and bit for
//! bit against ggml itself (`tests/oracle/kquant_dots.json`).

use super::*;
use crate::kernels::test_values;
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

const KINDS: [(GgmlDType, KQuant); 5] = [
    (GgmlDType::Q2K, KQuant::Q2K),
    (GgmlDType::Q3K, KQuant::Q3K),
    (GgmlDType::Q4K, KQuant::Q4K),
    (GgmlDType::Q5K, KQuant::Q5K),
    (GgmlDType::Q6K, KQuant::Q6K),
];

/// Deterministic values in [-1, 1) with a few outliers (every 61st value times 40, every
/// 97th times -90), as real activations and weights have.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut v = test_values(n, seed);
    for (i, x) in v.iter_mut().enumerate() {
        if i % 61 == 7 {
            *x *= 40.0;
        }
        if i % 97 == 11 {
            *x *= -90.0;
        }
    }
    v
}

/// `rows × cols` weights quantized by candle: the raw blocks and candle's dequantized rows.
fn weights(dt: GgmlDType, rows: usize, cols: usize, seed: u32) -> (Vec<u8>, Vec<Vec<f32>>) {
    let w = Tensor::from_vec(values(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&w, dt).unwrap();
    let bytes = q.data().unwrap().into_owned();
    let deq = q.dequantize(&Device::Cpu).unwrap().to_vec2().unwrap();
    (bytes, deq)
}

fn acts(x: &[f32]) -> Vec<Q8KBlock> {
    let mut a = vec![Q8KBlock::ZERO; x.len() / QK_K];
    quantize_q8k(x, &mut a);
    a
}

fn has_avx2() -> bool {
    crate::kernels::simd::avx2_fma_f16c()
}

/// A scalar model of ggml's AVX2 kernels: the same integers in the same eight int32 lanes
/// (lane `(p % 32) / 4` for weight `p`; Q6_K's offset and the mins by sub-block pairs), the
/// same fused multiply-adds per lane and block, the same final reductions. The SIMD kernels
/// must give its results bit for bit.
fn avx2_model(kind: KQuant, w: &[u8], a: &[Q8KBlock]) -> f32 {
    let mut acc = [0f32; 8];
    let mut acc_m = [0f32; 4];
    let mut summs = 0f32;
    for (blk, y) in w.chunks_exact(kind.block_bytes()).zip(a) {
        let u = unpack(kind, blk);
        let d = y.d * u.d;
        let dmin = -y.d * u.dmin;
        let b = |j: usize| i32::from(y.bsums[j]);
        let mut lanes = [0i64; 8];
        for p in 0..QK_K {
            // Q6_K multiplies the weights unsigned (0..=63) and takes the 32 off later.
            let q = i64::from(u.q[p]) + if kind == KQuant::Q6K { 32 } else { 0 };
            lanes[p % 32 / 4] += i64::from(u.scale[p / 16]) * q * i64::from(y.qs[p]);
        }
        match kind {
            KQuant::Q2K => {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let prod = u.min[2 * k] * b(2 * k) + u.min[2 * k + 1] * b(2 * k + 1);
                    *acc = dmin.mul_add(prod as f32, *acc);
                }
            }
            KQuant::Q4K | KQuant::Q5K => {
                // `u.min` repeats each min of 32 weights twice: min `2k` is `u.min[4k]`.
                let prod: Vec<i32> = (0..4)
                    .map(|k| {
                        u.min[4 * k] * (b(4 * k) + b(4 * k + 1))
                            + u.min[4 * k + 2] * (b(4 * k + 2) + b(4 * k + 3))
                    })
                    .collect();
                if kind == KQuant::Q4K {
                    for (m, &p) in acc_m.iter_mut().zip(&prod) {
                        *m = dmin.mul_add(p as f32, *m);
                    }
                } else {
                    summs = dmin.mul_add(prod.iter().sum::<i32>() as f32, summs);
                }
            }
            KQuant::Q6K => {
                for (k, l) in lanes.iter_mut().enumerate() {
                    let s = b(2 * k) * u.scale[2 * k] + b(2 * k + 1) * u.scale[2 * k + 1];
                    *l -= 32 * i64::from(s);
                }
            }
            KQuant::Q3K => {}
        }
        for (acc, &l) in acc.iter_mut().zip(&lanes) {
            let l = i32::try_from(l).expect("an int32 lane, as in ggml");
            *acc = d.mul_add(l as f32, *acc);
        }
    }
    let s: Vec<f32> = (0..4).map(|i| acc[i] + acc[i + 4]).collect();
    let total = (s[0] + s[2]) + (s[1] + s[3]);
    match kind {
        KQuant::Q4K => total + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3])),
        KQuant::Q5K => total + summs,
        _ => total,
    }
}

#[test]
fn types_and_block_sizes_match_candle() {
    for (dt, kind) in KINDS {
        assert_eq!(KQuant::from_dtype(dt), Some(kind));
        assert_eq!(kind.block_bytes(), dt.type_size(), "{dt:?}");
        assert_eq!(dt.block_size(), QK_K, "{dt:?}");
    }
    for dt in [
        GgmlDType::Q4_0,
        GgmlDType::Q8_0,
        GgmlDType::Q8K,
        GgmlDType::F32,
    ] {
        assert_eq!(KQuant::from_dtype(dt), None, "{dt:?}");
    }
}

/// Hand-computed blocks. The first one's maximum is negative, -127/64, so `iscale = 64` and
/// the products land exactly on halves, which round to even: 2.5 → 2, -3.5 → -4, 0.5 → 0,
/// 1.5 → 2 (half away from zero would give 3, -4, 1, 2); `d = 1/64`. The second one's largest
/// magnitudes tie: the first (+1.0) sets the sign, so `d` is negative and the later -1.0
/// becomes +127. The third is all zeros.
#[test]
fn q8k_quantization_hand_case() {
    let mut x = vec![0f32; 3 * QK_K];
    x[1..6].copy_from_slice(&[
        2.5 / 64.0,
        -3.5 / 64.0,
        0.5 / 64.0,
        1.5 / 64.0,
        -127.0 / 64.0,
    ]);
    x[20] = 1.0;
    x[QK_K] = 1.0;
    x[QK_K + 7] = -1.0;
    x[QK_K + 8] = 0.25;
    let a = acts(&x);
    let mut want = [0i8; QK_K];
    want[1..6].copy_from_slice(&[2, -4, 0, 2, -127]);
    want[20] = 64;
    assert_eq!(a[0].qs, want);
    assert_eq!(a[0].d, 1.0 / 64.0);
    assert_eq!(a[0].bsums[..3], [2 - 4 + 2 - 127, 64, 0]);
    assert!(a[0].bsums[2..].iter().all(|&s| s == 0));

    let mut want = [0i8; QK_K];
    want[0] = -127;
    want[7] = 127;
    want[8] = -32; // -31.75
    assert_eq!(a[1].qs, want);
    assert_eq!(a[1].d, -1.0 / 127.0);
    assert_eq!(a[1].bsums[0], -32);

    assert_eq!(a[2], Q8KBlock::ZERO);
}

/// The sums kept per 16 values are those of the quantized values, for blocks of every kind.
#[test]
fn q8k_bsums_are_sums_of_qs() {
    let x = values(QK_K * 12, 3);
    for b in acts(&x) {
        for (s, q) in b.bsums.iter().zip(b.qs.chunks(16)) {
            assert_eq!(i32::from(*s), q.iter().map(|&q| i32::from(q)).sum::<i32>());
        }
        assert!(b.qs.contains(&-127), "the maximum quantizes to -127");
        assert!(b.qs.iter().all(|&q| q >= -127));
    }
}

#[test]
fn nearest_int_rounds_half_to_even() {
    for i in -2000..=2000 {
        let v = i as f32 * 0.125 - 0.0625 * (i % 3) as f32;
        assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v}");
    }
    assert_eq!(
        (nearest_int(2.5), nearest_int(-2.5), nearest_int(3.5)),
        (2, -2, 4)
    );
}

#[test]
#[should_panic(expected = "quantize_q8k")]
fn q8k_rejects_partial_blocks() {
    quantize_q8k(&[0.0; 300], &mut [Q8KBlock::ZERO]);
}

/// Our dequantized rows are candle's bit for bit, for every type and several rows.
#[test]
fn dequantize_row_equals_candle() {
    for (dt, kind) in KINDS {
        let (rows, cols) = (4, 768);
        let (bytes, want) = weights(dt, rows, cols, 40);
        let row_bytes = cols / QK_K * kind.block_bytes();
        for (r, want) in want.iter().enumerate() {
            let mut got = vec![0f32; cols];
            dequantize_row(kind, &bytes[r * row_bytes..(r + 1) * row_bytes], &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(want), "{dt:?} row {r}");
        }
    }
}

/// The activations dequantized (`d * q`, in f32 as ggml's `dequantize_row_q8_K`), as f64.
fn dequantized_acts(a: &[Q8KBlock]) -> Vec<f64> {
    a.iter()
        .flat_map(|b| b.qs.map(|q| f64::from(b.d * f32::from(q))))
        .collect()
}

/// `Σ |w·x|`, the size of the terms a product sums: its float rounding is relative to this,
/// not to the result, which can cancel to far less.
fn magnitude(w: &[f32], x: &[f64]) -> f64 {
    w.iter()
        .zip(x)
        .map(|(&w, x)| (f64::from(w) * x).abs())
        .sum()
}

/// `got` against the f64 product of the dequantized weights and activations.
fn check_against_dequantized(kind: KQuant, got: f32, w: &[f32], a: &[Q8KBlock], what: &str) {
    let x = dequantized_acts(a);
    let want: f64 = w.iter().zip(&x).map(|(&w, x)| f64::from(w) * x).sum();
    let err = (f64::from(got) - want).abs() / magnitude(w, &x);
    assert!(
        err < 1e-6,
        "{kind:?} {what}: {got} vs {want} (rel. {err:e})"
    );
}

/// The product equals the one of the dequantized weights and activations (the integer sums
/// are exact, only float rounding differs), for every type and several widths, on both the
/// kernel this CPU picks and the portable one.
#[test]
fn dot_matches_dequantized_product() {
    for (dt, kind) in KINDS {
        for cols in [256, 512, 1536, 2304] {
            let rows = 3;
            let (bytes, deq) = weights(dt, rows, cols, cols as u32);
            let row_bytes = cols / QK_K * kind.block_bytes();
            let a = acts(&values(cols, 7 + cols as u32));
            for (r, w) in deq.iter().enumerate() {
                let wr = &bytes[r * row_bytes..(r + 1) * row_bytes];
                let what = format!("{cols} cols, row {r}");
                check_against_dequantized(kind, dot(kind, wr, &a), w, &a, &what);
                check_against_dequantized(kind, dot_generic(kind, wr, &a), w, &a, &what);
            }
        }
    }
}

/// The SIMD kernels and the portable ones agree to float rounding (they sum in different
/// orders, as ggml's AVX2 and scalar code do).
#[test]
fn simd_and_generic_dots_agree() {
    for (dt, kind) in KINDS {
        let cols = 1536;
        let (bytes, deq) = weights(dt, 4, cols, 5);
        let row_bytes = cols / QK_K * kind.block_bytes();
        let a = acts(&values(cols, 9));
        let x = dequantized_acts(&a);
        for (r, (w, wd)) in bytes.chunks(row_bytes).zip(&deq).enumerate() {
            let (fast, slow) = (dot(kind, w, &a), dot_generic(kind, w, &a));
            let err = f64::from(fast - slow).abs() / magnitude(wd, &x);
            assert!(
                err < 1e-6,
                "{kind:?} row {r}: {fast} vs {slow} (rel. {err:e})"
            );
            if !has_avx2() {
                assert_eq!(
                    fast.to_bits(),
                    slow.to_bits(),
                    "no AVX2: dot is the generic"
                );
            }
        }
    }
}

/// The SIMD kernels give the scalar model of ggml's AVX2 lanes bit for bit. A product in the
/// wrong lane, a scale product in another order or a different final reduction changes the
/// last bits of some of these outputs.
#[test]
fn simd_equals_avx2_lane_model_bitwise() {
    if !has_avx2() {
        return; // the SIMD kernels do not run on this CPU
    }
    for (dt, kind) in KINDS {
        for cols in [256, 1536, 2304] {
            let (bytes, _) = weights(dt, 6, cols, 11 + cols as u32);
            let row_bytes = cols / QK_K * kind.block_bytes();
            for seed in [1, 2] {
                let a = acts(&values(cols, seed));
                for (r, w) in bytes.chunks(row_bytes).enumerate() {
                    let (got, want) = (dot(kind, w, &a), avx2_model(kind, w, &a));
                    assert_eq!(got.to_bits(), want.to_bits(), "{kind:?} {cols} row {r}");
                }
            }
        }
    }
}

/// Several activation rows at once give each row's single-row product bit for bit, for every
/// count from 1 to 4.
#[test]
fn dot_rows_equal_single_dots_bitwise() {
    for (dt, kind) in KINDS {
        let cols = 768;
        let (bytes, _) = weights(dt, 3, cols, 21);
        let row_bytes = cols / QK_K * kind.block_bytes();
        let rows: Vec<Vec<Q8KBlock>> = (0..MAX_ROWS as u32)
            .map(|s| acts(&values(cols, 30 + s)))
            .collect();
        for w in bytes.chunks(row_bytes) {
            let single: Vec<u32> = rows.iter().map(|a| dot(kind, w, a).to_bits()).collect();
            for n in 1..=MAX_ROWS {
                let acts: Vec<&[Q8KBlock]> = rows[..n].iter().map(|a| a.as_slice()).collect();
                let mut out = vec![0f32; n];
                dot_rows(kind, w, &acts, &mut out);
                let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, single[..n], "{kind:?} with {n} rows");
            }
        }
    }
}

/// Every byte-product instruction this CPU has (AVX2's `madd` + add, VNNI's `dpwssd`) gives
/// the same outputs bit for bit, for every type, row count and the repacked Q4_K order.
#[cfg(target_arch = "x86_64")]
#[test]
fn byte_dot_instructions_agree_bit_for_bit() {
    use crate::kernels::simd::ByteDot;
    if crate::kernels::simd::byte_dot().is_none() {
        return; // no SIMD kernels on this CPU: nothing to compare
    }
    let mut dots = vec![ByteDot::Madd];
    if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512vl") {
        dots.push(ByteDot::Avx512Vnni);
    }
    if std::is_x86_feature_detected!("avxvnni") {
        dots.push(ByteDot::AvxVnni);
    }
    let cols = 768;
    // Extreme activations too: ±amax makes ±127 bytes, the largest pair sums.
    let mut x: Vec<Vec<f32>> = (0..MAX_ROWS as u32).map(|s| values(cols, 50 + s)).collect();
    x[0][5] = 500.0;
    x[3][700] = -500.0;
    let rows: Vec<Vec<Q8KBlock>> = x.iter().map(|r| acts(r)).collect();
    let mut checked = 0;
    for (dt, kind) in KINDS {
        let (bytes, _) = weights(dt, 2, cols, 27);
        let row_bytes = cols / QK_K * kind.block_bytes();
        for w in bytes.chunks(row_bytes) {
            for n in 1..=MAX_ROWS {
                let acts: Vec<&[Q8KBlock]> = rows[..n].iter().map(|a| a.as_slice()).collect();
                let run = |dot: ByteDot, repacked: bool| {
                    let mut out = vec![0f32; n];
                    // SAFETY: the CPU has `dot` (listed above); the shapes match.
                    unsafe {
                        if repacked {
                            avx2::dot_rows_q4k_repacked(dot, w, &acts, &mut out)
                        } else {
                            avx2::dot_rows(dot, kind, w, &acts, &mut out)
                        }
                    };
                    out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                for repacked in [false, kind == KQuant::Q4K] {
                    let want = run(ByteDot::Madd, repacked);
                    for &dot in &dots[1..] {
                        assert_eq!(run(dot, repacked), want, "{kind:?} {dot:?} {n} rows");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(dots.len() == 1 || checked > 0);
}

/// Q4_K in llama.cpp's repacked order: the SIMD kernel gives the portable one's bits for every
/// group size, and every size is the plain product up to rounding.
#[test]
fn repacked_q4k_simd_equals_generic_bitwise() {
    let cols = 1024;
    let (bytes, _) = weights(GgmlDType::Q4K, 2, cols, 23);
    let row_bytes = cols / QK_K * KQuant::Q4K.block_bytes();
    let rows: Vec<Vec<Q8KBlock>> = (0..MAX_ROWS as u32)
        .map(|s| acts(&values(cols, 40 + s)))
        .collect();
    for w in bytes.chunks(row_bytes) {
        for n in 1..=MAX_ROWS {
            let acts: Vec<&[Q8KBlock]> = rows[..n].iter().map(|a| a.as_slice()).collect();
            let (mut fast, mut slow) = (vec![0f32; n], vec![0f32; n]);
            dot_rows_repacked(w, &acts, &mut fast);
            repacked_generic(w, &acts, &mut slow);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&slow), "{n} rows");
            for (f, a) in fast.iter().zip(&acts) {
                let plain = dot(KQuant::Q4K, w, a);
                assert!(
                    (f - plain).abs() <= 1e-4 * plain.abs().max(1.0),
                    "{f} vs {plain}"
                );
            }
        }
    }
}

/// Weights at an odd address (as in a memory-mapped GGUF file) give the same products.
#[test]
fn unaligned_weights_give_the_same_dot() {
    for (dt, kind) in KINDS {
        let cols = 512;
        let (bytes, _) = weights(dt, 1, cols, 8);
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let a = acts(&values(cols, 4));
        assert_eq!(
            dot(kind, &shifted[1..], &a).to_bits(),
            dot(kind, &bytes, &a).to_bits(),
            "{kind:?}"
        );
    }
}

#[test]
#[should_panic(expected = "dot_rows")]
fn dot_rejects_mismatched_lengths() {
    let a = acts(&values(512, 1));
    dot(KQuant::Q4K, &[0u8; 144], &a);
}

/// Hex digits to bytes.
fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A Q8_K block in ggml's memory layout (`d`, `qs`, `bsums`; 292 bytes, little-endian).
fn q8k_bytes(b: &Q8KBlock) -> Vec<u8> {
    let mut v = b.d.to_le_bytes().to_vec();
    v.extend(b.qs.iter().map(|&q| q as u8));
    v.extend(b.bsums.iter().flat_map(|s| s.to_le_bytes()));
    v
}

/// SplitMix64, as `tests/oracle/kquant_dots.py` draws its random blocks.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The oracle script's `random_blocks`: `nb` blocks of random bytes, then each block's f16
/// scales set to positive normal values in [2^-9, 2^-5).
fn random_blocks(kind: KQuant, seed: u64, nb: usize) -> Vec<u8> {
    let bb = kind.block_bytes();
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(nb * bb + 8);
    while out.len() < nb * bb {
        out.extend(rng.next().to_le_bytes());
    }
    out.truncate(nb * bb);
    let f16_at: &[usize] = match kind {
        KQuant::Q2K => &[80, 82],
        KQuant::Q3K => &[108],
        KQuant::Q4K | KQuant::Q5K => &[0, 2],
        KQuant::Q6K => &[208],
    };
    for b in 0..nb {
        for &off in f16_at {
            let h = 0x1800 + (rng.next() % 0x1000) as u16;
            out[b * bb + off..b * bb + off + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    out
}

/// Bit for bit against ggml itself: `tests/oracle/kquant_dots.py` ran llama.cpp's CPU
/// backend (the library llama-cpp-python 0.3.36 builds with `GGML_NATIVE`) on fixed inputs:
/// its Q8_K blocks (`from_float`), its products (`vec_dot`) of ggml-quantized and of random
/// weight blocks, and its dequantized blocks (`to_float`). Our quantization and
/// dequantization must equal them on any CPU, our products where the AVX2 kernels run, and
/// the scalar model of the AVX2 lanes everywhere.
#[test]
fn oracle_ggml_results_bitwise() {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("../../../../tests/oracle/kquant_dots.json")).unwrap();
    let kind_of = |case: &serde_json::Value| match case["type"].as_str().unwrap() {
        "q2_K" => KQuant::Q2K,
        "q3_K" => KQuant::Q3K,
        "q4_K" => KQuant::Q4K,
        "q5_K" => KQuant::Q5K,
        "q6_K" => KQuant::Q6K,
        other => panic!("unknown type {other}"),
    };
    let mut acts_by_id = Vec::new();
    for act in json["activations"].as_array().unwrap() {
        let x: Vec<f32> = unhex(act["x"].as_str().unwrap())
            .chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let a = acts(&x);
        let ours: Vec<u8> = a.iter().flat_map(q8k_bytes).collect();
        assert_eq!(ours, unhex(act["q8k"].as_str().unwrap()), "Q8_K blocks");
        acts_by_id.push(a);
    }
    let mut checked = [0usize; 5];
    let stored = json["dots"].as_array().unwrap().iter().map(|c| (c, false));
    let random = json["random_dots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c, true));
    for (case, is_random) in stored.chain(random) {
        let kind = kind_of(case);
        let a = &acts_by_id[case["act"].as_u64().unwrap() as usize];
        let w = if is_random {
            random_blocks(kind, case["seed"].as_u64().unwrap(), a.len())
        } else {
            unhex(case["w"].as_str().unwrap())
        };
        let want = u32::from_str_radix(case["dot"].as_str().unwrap(), 16).unwrap();
        let what = format!(
            "{kind:?} {}",
            if is_random { "random" } else { "quantized" }
        );
        if has_avx2() {
            let got = dot(kind, &w, a);
            assert_eq!(
                got.to_bits(),
                want,
                "{what}: {got} vs ggml {}",
                f32::from_bits(want)
            );
        }
        assert_eq!(
            avx2_model(kind, &w, a).to_bits(),
            want,
            "{what}: lane model vs ggml"
        );
        checked[kind as usize] += 1;
    }
    assert!(
        checked.iter().all(|&n| n >= 60),
        "products per type: {checked:?}"
    );
    for case in json["dequantized"].as_array().unwrap() {
        let kind = kind_of(case);
        let w = match case["seed"].as_u64() {
            Some(seed) => random_blocks(kind, seed, 1),
            None => unhex(case["w"].as_str().unwrap()),
        };
        let want = unhex(case["y"].as_str().unwrap());
        let mut y = vec![0f32; QK_K];
        dequantize_row(kind, &w, &mut y);
        let got: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(got, want, "{kind:?} dequantized");
    }
}
