//! Half-precision conversions as ggml's reference code computes them (its software
//! `fp32_to_fp16`, not a hardware instruction), so that every f16 scale and every f16/bf16
//! tensor gen writes has the bits llama.cpp's quantizer gives it, NaNs included.

/// f16 bits → f32. Exact for every finite value; ggml's bit trick, kept so that NaN payloads
/// widen as they do in ggml.
pub fn f16_to_f32(h: u16) -> f32 {
    let w = (h as u32) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);
    let exp_offset = 0xE0u32 << 23;
    let exp_scale = f32::from_bits(0x0780_0000); // 2^-112
    let normalized = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;
    let magic_mask = 126u32 << 23;
    let denormalized = f32::from_bits((two_w >> 17) | magic_mask) - 0.5;
    let denormalized_cutoff = 1u32 << 27;
    let bits = if two_w < denormalized_cutoff {
        denormalized.to_bits()
    } else {
        normalized.to_bits()
    };
    f32::from_bits(sign | bits)
}

/// f32 → f16 bits, rounding to nearest even; every NaN becomes the quiet NaN 0x7E00 (with the
/// sign kept), as in ggml.
pub fn f32_to_f16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);
    // Adding 2^(exponent - 10 + 15) lines the mantissa up so that the float addition rounds it.
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x7C00;
    let mantissa_bits = bits & 0x0FFF;
    let nonsign = exp_bits + mantissa_bits;
    let value = if shl1_w > 0xFF00_0000 {
        0x7E00
    } else {
        nonsign
    };
    ((sign >> 16) | value) as u16
}

/// bf16 bits → f32 (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// f32 → bf16 bits, rounding to nearest even; a NaN is made quiet (ggml's reference
/// conversion, which keeps subnormals).
pub fn f32_to_bf16(f: f32) -> u16 {
    let u = f.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// The little-endian f16 at `bytes[at..at + 2]`, widened.
pub fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f16 widens to the value the `half` crate (an independent implementation) gives,
    /// and narrows back to itself.
    #[test]
    fn f16_round_trips_and_matches_half() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            let reference = half::f16::from_bits(h).to_f32();
            if f.is_nan() {
                assert!(reference.is_nan());
                assert_eq!(f32_to_f16(f) & 0x8000, h & 0x8000);
                continue;
            }
            assert_eq!(f.to_bits(), reference.to_bits(), "f16 {h:#06x}");
            assert_eq!(f32_to_f16(f), h, "f16 {h:#06x}");
        }
    }

    /// Narrowing rounds to nearest even as `half` does, on values between f16 neighbours,
    /// overflows and subnormals.
    #[test]
    fn f32_to_f16_rounds_to_nearest_even() {
        let mut x = 0x1234_5678u32;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let f = f32::from_bits(x);
            if f.is_nan() {
                assert_eq!(f32_to_f16(f) & 0x7fff, 0x7E00);
                continue;
            }
            assert_eq!(f32_to_f16(f), half::f16::from_f32(f).to_bits(), "{f:e}");
        }
        assert_eq!(f32_to_f16(65520.0), 0x7C00, "rounds up to infinity");
        assert_eq!(f32_to_f16(1e-8), 0x0000);
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nans() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        assert_eq!(
            f32_to_bf16(f32::from_bits(0x3F80_8000)),
            0x3F80,
            "tie to even"
        );
        assert_eq!(
            f32_to_bf16(f32::from_bits(0x3F81_8000)),
            0x3F82,
            "tie to even"
        );
        assert_eq!(f32_to_bf16(f32::from_bits(0x7F80_0001)), 0x7FC0);
        assert_eq!(bf16_to_f32(0x3F80), 1.0);
    }
}
