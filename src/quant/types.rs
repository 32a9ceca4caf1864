//! The ggml tensor types a GGUF file can name (their ids, block sizes and names, as ggml's type
//! table has them), and what each file type `gen quantize` writes means to llama.cpp (its id in
//! `general.file_type`, the tensor type it starts from).

use crate::config::FileType;
use std::fmt;

/// A ggml tensor type. The ids are ggml's (`enum ggml_type`), as GGUF stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
}

impl GgmlType {
    /// Every type, in id order.
    pub const ALL: [GgmlType; 35] = {
        use GgmlType as T;
        [
            T::F32,
            T::F16,
            T::Q4_0,
            T::Q4_1,
            T::Q5_0,
            T::Q5_1,
            T::Q8_0,
            T::Q8_1,
            T::Q2_K,
            T::Q3_K,
            T::Q4_K,
            T::Q5_K,
            T::Q6_K,
            T::Q8_K,
            T::IQ2_XXS,
            T::IQ2_XS,
            T::IQ3_XXS,
            T::IQ1_S,
            T::IQ4_NL,
            T::IQ3_S,
            T::IQ2_S,
            T::IQ4_XS,
            T::I8,
            T::I16,
            T::I32,
            T::I64,
            T::F64,
            T::IQ1_M,
            T::BF16,
            T::TQ1_0,
            T::TQ2_0,
            T::MXFP4,
            T::NVFP4,
            T::Q1_0,
            T::Q2_0,
        ]
    };

    /// ggml's type traits: id, elements per block, bytes per block, name.
    fn traits(self) -> (u32, usize, usize, &'static str) {
        use GgmlType as T;
        match self {
            T::F32 => (0, 1, 4, "f32"),
            T::F16 => (1, 1, 2, "f16"),
            T::Q4_0 => (2, 32, 18, "q4_0"),
            T::Q4_1 => (3, 32, 20, "q4_1"),
            T::Q5_0 => (6, 32, 22, "q5_0"),
            T::Q5_1 => (7, 32, 24, "q5_1"),
            T::Q8_0 => (8, 32, 34, "q8_0"),
            T::Q8_1 => (9, 32, 36, "q8_1"),
            T::Q2_K => (10, 256, 84, "q2_K"),
            T::Q3_K => (11, 256, 110, "q3_K"),
            T::Q4_K => (12, 256, 144, "q4_K"),
            T::Q5_K => (13, 256, 176, "q5_K"),
            T::Q6_K => (14, 256, 210, "q6_K"),
            T::Q8_K => (15, 256, 292, "q8_K"),
            T::IQ2_XXS => (16, 256, 66, "iq2_xxs"),
            T::IQ2_XS => (17, 256, 74, "iq2_xs"),
            T::IQ3_XXS => (18, 256, 98, "iq3_xxs"),
            T::IQ1_S => (19, 256, 50, "iq1_s"),
            T::IQ4_NL => (20, 32, 18, "iq4_nl"),
            T::IQ3_S => (21, 256, 110, "iq3_s"),
            T::IQ2_S => (22, 256, 82, "iq2_s"),
            T::IQ4_XS => (23, 256, 136, "iq4_xs"),
            T::I8 => (24, 1, 1, "i8"),
            T::I16 => (25, 1, 2, "i16"),
            T::I32 => (26, 1, 4, "i32"),
            T::I64 => (27, 1, 8, "i64"),
            T::F64 => (28, 1, 8, "f64"),
            T::IQ1_M => (29, 256, 56, "iq1_m"),
            T::BF16 => (30, 1, 2, "bf16"),
            T::TQ1_0 => (34, 256, 54, "tq1_0"),
            T::TQ2_0 => (35, 256, 66, "tq2_0"),
            T::MXFP4 => (39, 32, 17, "mxfp4"),
            T::NVFP4 => (40, 64, 36, "nvfp4"),
            T::Q1_0 => (41, 128, 18, "q1_0"),
            T::Q2_0 => (42, 64, 18, "q2_0"),
        }
    }

    /// The type of a GGUF type id; `None` for ids ggml does not define (or has retired).
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's id, as GGUF stores it.
    pub fn id(self) -> u32 {
        self.traits().0
    }

    /// Elements per block (1 for the plain types).
    pub fn block_size(self) -> usize {
        self.traits().1
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.traits().2
    }

    /// ggml's name (`q4_K`, `f16`).
    pub fn name(self) -> &'static str {
        self.traits().3
    }

    /// Bytes of a row of `n` elements (`n` a multiple of the block size).
    pub fn row_size(self, n: usize) -> usize {
        n / self.block_size() * self.type_size()
    }

    /// Whether ggml counts it as quantized (`ggml_is_quantized`: every block type, not the
    /// plain float and integer types).
    pub fn is_quantized(self) -> bool {
        !matches!(
            self,
            Self::F32
                | Self::F16
                | Self::BF16
                | Self::F64
                | Self::I8
                | Self::I16
                | Self::I32
                | Self::I64
        )
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A file type's `llama_ftype` id (written as `general.file_type`) and the tensor type its
/// tensors start from before the per-tensor rules (`llama_ftype_get_default_type`).
pub fn file_type_info(t: FileType) -> (u32, GgmlType) {
    use FileType as F;
    use GgmlType as T;
    match t {
        F::Q4_0 => (2, T::Q4_0),
        F::Q4_1 => (3, T::Q4_1),
        F::Q5_0 => (8, T::Q5_0),
        F::Q5_1 => (9, T::Q5_1),
        F::Q8_0 => (7, T::Q8_0),
        F::Q2_K => (10, T::Q2_K),
        F::Q3_K_S => (11, T::Q3_K),
        F::Q3_K_M => (12, T::Q3_K),
        F::Q3_K_L => (13, T::Q3_K),
        F::Q4_K_S => (14, T::Q4_K),
        F::Q4_K_M => (15, T::Q4_K),
        F::Q5_K_S => (16, T::Q5_K),
        F::Q5_K_M => (17, T::Q5_K),
        F::Q6_K => (18, T::Q6_K),
        F::F16 => (1, T::F16),
        F::BF16 => (32, T::BF16),
        F::F32 => (0, T::F32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_ids_round_trip() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        assert_eq!(GgmlType::from_id(4), None, "Q4_2 was removed from ggml");
    }
}
