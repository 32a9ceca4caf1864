//! GGUF as `gen quantize` reads and writes it: the metadata kept in file order with every value
//! as its bytes (so that copied keys are written back exactly), the tensor infos in file order,
//! and a writer that lays a file out as ggml's `gguf_write_out` does (version 3, 64-bit counts,
//! tensor data aligned and each tensor padded to the alignment with zeros).
//!
//! candle's GGUF reader keeps metadata in a hash map, which loses the order a byte-identical
//! copy needs; hence this small reader of our own.

use super::types::GgmlType;
use anyhow::{bail, Context, Result};

/// `general.alignment` when a file does not set it.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The version gen writes (ggml's `GGUF_VERSION`).
const VERSION: u32 = 3;
/// GGUF's type id for arrays.
const ARRAY: u32 = 9;
/// GGUF's type id for strings.
const STRING: u32 = 8;
/// GGUF's type id for booleans.
const BOOL: u32 = 7;
/// GGUF's type id for u32.
pub const U32: u32 = 4;
/// GGUF's type id for i32.
const I32: u32 = 5;
/// GGUF's type id for f32.
const F32: u32 = 6;

use crate::weights::gguf_scalar_size as scalar_size;

/// A metadata value, kept as its bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number or a boolean (GGUF type `ty`), little-endian; booleans normalised to 0/1 as
    /// ggml writes them back.
    Scalar { ty: u32, bytes: Vec<u8> },
    /// A string (its bytes, not necessarily UTF-8).
    Str(Vec<u8>),
    /// An array of `n` scalars of type `ty`, their bytes back to back.
    Array { ty: u32, n: u64, bytes: Vec<u8> },
    /// An array of strings.
    StrArray(Vec<Vec<u8>>),
}

impl Value {
    /// A u32 value.
    pub fn u32(v: u32) -> Self {
        Value::Scalar {
            ty: U32,
            bytes: v.to_le_bytes().to_vec(),
        }
    }

    /// An i32 value.
    pub fn i32(v: i32) -> Self {
        Value::Scalar {
            ty: I32,
            bytes: v.to_le_bytes().to_vec(),
        }
    }

    /// An f32 value.
    pub fn f32(v: f32) -> Self {
        Value::Scalar {
            ty: F32,
            bytes: v.to_le_bytes().to_vec(),
        }
    }

    /// A boolean.
    pub fn bool(v: bool) -> Self {
        Value::Scalar {
            ty: BOOL,
            bytes: vec![u8::from(v)],
        }
    }

    /// A string.
    pub fn str(s: &str) -> Self {
        Value::Str(s.as_bytes().to_vec())
    }

    /// An array of i32.
    pub fn i32_array(v: &[i32]) -> Self {
        Value::Array {
            ty: I32,
            n: v.len() as u64,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// The value as an unsigned integer, when it is a scalar integer type that holds one.
    pub fn as_u64(&self) -> Option<u64> {
        let Value::Scalar { ty, bytes } = self else {
            return None;
        };
        let mut b = [0u8; 8];
        b[..bytes.len()].copy_from_slice(bytes);
        let raw = u64::from_le_bytes(b);
        let signed = |bits: u32| {
            let v = ((raw << (64 - bits)) as i64) >> (64 - bits);
            u64::try_from(v).ok()
        };
        match ty {
            0 | 2 | 4 | 10 => Some(raw),
            1 => signed(8),
            3 => signed(16),
            5 => signed(32),
            11 => signed(64),
            _ => None,
        }
    }

    /// The value as text, when it is a UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The first element of an integer array as an unsigned integer (per-layer head counts).
    fn first_of_array(&self) -> Option<u64> {
        let Value::Array { ty, n, bytes } = self else {
            return None;
        };
        let size = scalar_size(*ty)?;
        if *n == 0 || *ty == BOOL {
            return None;
        }
        Value::Scalar {
            ty: *ty,
            bytes: bytes[..size].to_vec(),
        }
        .as_u64()
    }

    /// An integer, or the first element of an integer array.
    pub fn as_count(&self) -> Option<u64> {
        self.as_u64().or_else(|| self.first_of_array())
    }
}

/// One metadata key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Kv {
    pub key: String,
    pub value: Value,
}

/// A tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml's `ne`, padded with 1s: `ne[0]` is the row length.
    pub ne: [u64; 4],
    pub ty: GgmlType,
    /// Where its data starts, from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Elements in all.
    pub fn elements(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Bytes of its data.
    pub fn bytes(&self) -> u64 {
        self.elements() / self.ty.block_size() as u64 * self.ty.type_size() as u64
    }
}

/// A parsed GGUF header.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub kvs: Vec<Kv>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Where the data section starts in the file.
    pub data_offset: u64,
}

impl Gguf {
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kvs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
    }

    /// Parses the header at the start of `file` (the whole file, so that tensor extents are
    /// checked against its length).
    pub fn parse(file: &[u8]) -> Result<Self> {
        let mut r = Reader { buf: file, at: 0 };
        if r.take(4).ok() != Some(b"GGUF".as_slice()) {
            bail!("not a GGUF file (its first bytes are not `GGUF`)");
        }
        let version = r.u32()?;
        match version {
            1 => {
                bail!("GGUF version 1 is not supported (nor by llama.cpp); convert the model again")
            }
            2 | 3 => {}
            v => bail!("GGUF version {v} is not supported (gen reads versions 2 and 3)"),
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        let mut kvs: Vec<Kv> = Vec::new();
        for i in 0..n_kv {
            let key = r.string().with_context(|| format!("reading key {i}"))?;
            let key = String::from_utf8(key)
                .map_err(|_| anyhow::anyhow!("metadata key {i} is not UTF-8"))?;
            if key.is_empty() {
                bail!("metadata key {i} is empty");
            }
            if kvs.iter().any(|kv| kv.key == key) {
                bail!("metadata key `{key}` appears twice");
            }
            let value = r
                .value()
                .with_context(|| format!("reading the value of `{key}`"))?;
            kvs.push(Kv { key, value });
        }
        let alignment = match kvs.iter().find(|kv| kv.key == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(kv) => match &kv.value {
                Value::Scalar { ty: U32, .. } => kv.value.as_u64().unwrap_or(0),
                _ => bail!("`general.alignment` must be a u32"),
            },
        };
        if alignment == 0 || !alignment.is_power_of_two() {
            bail!("`general.alignment` is {alignment}; it must be a power of two");
        }
        let mut tensors: Vec<TensorInfo> = Vec::new();
        for i in 0..n_tensors {
            let name = r
                .string()
                .with_context(|| format!("reading the name of tensor {i}"))?;
            let name = String::from_utf8(name)
                .map_err(|_| anyhow::anyhow!("the name of tensor {i} is not UTF-8"))?;
            // ggml's GGML_MAX_NAME is 64 with the terminating zero.
            if name.len() >= 64 {
                bail!("tensor name `{name}` is longer than ggml's 63 bytes");
            }
            let n_dims = r.u32()?;
            if n_dims > 4 {
                bail!("tensor `{name}` has {n_dims} dimensions; ggml allows at most 4");
            }
            let mut ne = [1u64; 4];
            for d in ne.iter_mut().take(n_dims as usize) {
                let v = r.u64()?;
                if v > i64::MAX as u64 {
                    bail!("tensor `{name}` has a negative dimension");
                }
                *d = v;
            }
            let id = r.u32()?;
            let ty = GgmlType::from_id(id).with_context(|| {
                format!("tensor `{name}` has type {id}, which ggml does not define")
            })?;
            if ne[0] % ty.block_size() as u64 != 0 {
                bail!(
                    "tensor `{name}` has rows of {} elements, not a multiple of {ty}'s block of {}",
                    ne[0],
                    ty.block_size()
                );
            }
            let offset = r.u64()?;
            if tensors.iter().any(|t| t.name == name) {
                bail!("tensor `{name}` appears twice");
            }
            tensors.push(TensorInfo {
                name,
                ne,
                ty,
                offset,
            });
        }
        let data_offset = (r.at as u64).next_multiple_of(alignment);
        let file_len = file.len() as u64;
        for t in &tensors {
            let end =
                t.ne.iter()
                    .try_fold(1u64, |n, &d| n.checked_mul(d))
                    .map(|n| n / t.ty.block_size() as u64)
                    .and_then(|blocks| blocks.checked_mul(t.ty.type_size() as u64))
                    .and_then(|b| b.checked_add(t.offset))
                    .and_then(|b| b.checked_add(data_offset));
            match end {
                None => bail!("tensor `{}` has a size or offset no file can hold; the header is corrupt", t.name),
                Some(end) if end > file_len => bail!(
                    "the file is truncated: tensor `{}` ends at byte {end} but the file has {file_len} bytes",
                    t.name
                ),
                Some(_) => {}
            }
        }
        Ok(Self {
            kvs,
            tensors,
            alignment,
            data_offset,
        })
    }

    /// The bytes of tensor `t`'s data in `file`.
    pub fn data<'a>(&self, file: &'a [u8], t: &TensorInfo) -> &'a [u8] {
        let start = (self.data_offset + t.offset) as usize;
        &file[start..start + t.bytes() as usize]
    }
}

/// A bounds-checked cursor over the header bytes.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let left = (self.buf.len() - self.at) as u64;
        if n > left {
            bail!("the header is truncated");
        }
        let s = &self.buf[self.at..self.at + n as usize];
        self.at += n as usize;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        let n = self.u64()?;
        Ok(self.take(n)?.to_vec())
    }

    fn value(&mut self) -> Result<Value> {
        let ty = self.u32()?;
        if let Some(size) = scalar_size(ty) {
            let mut bytes = self.take(size as u64)?.to_vec();
            if ty == BOOL {
                bytes[0] = (bytes[0] != 0) as u8;
            }
            return Ok(Value::Scalar { ty, bytes });
        }
        match ty {
            STRING => Ok(Value::Str(self.string()?)),
            ARRAY => {
                let elem = self.u32()?;
                let n = self.u64()?;
                if let Some(size) = scalar_size(elem) {
                    let len = n
                        .checked_mul(size as u64)
                        .context("the array is larger than any file")?;
                    let mut bytes = self.take(len)?.to_vec();
                    if elem == BOOL {
                        for b in &mut bytes {
                            *b = (*b != 0) as u8;
                        }
                    }
                    Ok(Value::Array { ty: elem, n, bytes })
                } else if elem == STRING {
                    // Each string takes at least its 8-byte length: a count beyond that is corrupt.
                    if n > (self.buf.len() - self.at) as u64 / 8 {
                        bail!("the header is truncated");
                    }
                    (0..n)
                        .map(|_| self.string())
                        .collect::<Result<Vec<_>>>()
                        .map(Value::StrArray)
                } else {
                    bail!("arrays of GGUF type {elem} are not supported (nor by llama.cpp)")
                }
            }
            other => bail!("{other} is not a GGUF value type"),
        }
    }
}

/// A tensor as the output file lists it.
#[derive(Debug, Clone)]
pub struct OutTensor {
    pub name: String,
    pub ne: [u64; 4],
    pub ty: GgmlType,
}

impl OutTensor {
    /// Bytes of its data.
    pub fn bytes(&self) -> u64 {
        self.ne.iter().product::<u64>() / self.ty.block_size() as u64 * self.ty.type_size() as u64
    }
}

/// Dimensions that count: up to the last that is not 1, at least 1 (`ggml_n_dims`). The header
/// lists only these, and 1-d tensors are never quantized.
pub fn n_dims(ne: &[u64; 4]) -> usize {
    (1..4).rev().find(|&i| ne[i] != 1).map_or(1, |i| i + 1)
}

/// The header of a GGUF file with these keys and tensors, tensor data laid out in order with
/// each tensor padded to `alignment`; the header itself is padded to the alignment, so the
/// first tensor's data follows it directly.
pub fn header(kvs: &[Kv], tensors: &[OutTensor], alignment: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let put_str = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
    };
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for kv in kvs {
        put_str(&mut out, kv.key.as_bytes());
        match &kv.value {
            Value::Scalar { ty, bytes } => {
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Value::Str(s) => {
                out.extend_from_slice(&STRING.to_le_bytes());
                put_str(&mut out, s);
            }
            Value::Array { ty, n, bytes } => {
                out.extend_from_slice(&ARRAY.to_le_bytes());
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Value::StrArray(items) => {
                out.extend_from_slice(&ARRAY.to_le_bytes());
                out.extend_from_slice(&STRING.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for s in items {
                    put_str(&mut out, s);
                }
            }
        }
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut out, t.name.as_bytes());
        let n_dims = n_dims(&t.ne);
        out.extend_from_slice(&(n_dims as u32).to_le_bytes());
        for d in &t.ne[..n_dims] {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += t.bytes().next_multiple_of(alignment);
    }
    out.resize((out.len() as u64).next_multiple_of(alignment) as usize, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<Kv>, Vec<OutTensor>) {
        let kvs = vec![
            Kv {
                key: "general.architecture".into(),
                value: Value::Str(b"llama".to_vec()),
            },
            Kv {
                key: "flag".into(),
                value: Value::Scalar {
                    ty: BOOL,
                    bytes: vec![1],
                },
            },
            Kv {
                key: "ids".into(),
                value: Value::Array {
                    ty: 5,
                    n: 2,
                    bytes: vec![1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff],
                },
            },
            Kv {
                key: "words".into(),
                value: Value::StrArray(vec![b"a".to_vec(), b"".to_vec()]),
            },
            Kv {
                key: "n".into(),
                value: Value::u32(7),
            },
        ];
        let tensors = vec![
            OutTensor {
                name: "a.weight".into(),
                ne: [32, 3, 1, 1],
                ty: GgmlType::Q8_0,
            },
            OutTensor {
                name: "b".into(),
                ne: [5, 1, 1, 1],
                ty: GgmlType::F32,
            },
        ];
        (kvs, tensors)
    }

    /// A written header parses back to the same keys, tensors and offsets.
    #[test]
    fn header_round_trips() {
        let (kvs, tensors) = sample();
        let mut file = header(&kvs, &tensors, 32);
        assert_eq!(file.len() % 32, 0);
        let data_start = file.len();
        file.resize(data_start + 3 * 34 + 30 + 20, 0);
        let g = Gguf::parse(&file).unwrap();
        assert_eq!(g.kvs, kvs);
        assert_eq!(g.data_offset as usize, data_start);
        assert_eq!(g.tensors.len(), 2);
        assert_eq!(g.tensors[0].ne, [32, 3, 1, 1]);
        assert_eq!(g.tensors[1].offset, 128, "102 bytes padded to 128");
        assert_eq!(g.get("n").and_then(Value::as_u64), Some(7));
        assert_eq!(g.get("ids").and_then(Value::as_count), Some(1));
    }

    #[test]
    fn truncated_or_foreign_files_are_errors() {
        let (kvs, tensors) = sample();
        let file = header(&kvs, &tensors, 32);
        let e = Gguf::parse(&file).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = Gguf::parse(&file[..40]).unwrap_err();
        assert!(format!("{e:#}").contains("truncated"), "{e:#}");
        assert!(Gguf::parse(b"PK\x03\x04 not a gguf").is_err());
    }
}
