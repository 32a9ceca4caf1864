//! Quantized matrix products computed the way ggml's CPU backend computes them, for the
//! 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): activations are quantized per block of
//! 32 with `id = 127 / amax` and round-half-to-even (ggml's AVX2 `quantize_row_q8_{0,1}`), then
//! dotted with the weight blocks in integers. Matching ggml's rounding keeps our logits within
//! float-summation noise of llama.cpp on the same file; candle's own kernels quantize
//! activations differently (and have no SIMD path for Q4_1).

use super::Out;
use anyhow::{bail, Result};
pub use arith::Arithmetic;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
#[cfg(test)]
use candle_core::Tensor;
use half::f16;
use kquant::KQuant;
use memmap2::Mmap;
use std::sync::Arc;

const QK: usize = 32;

/// A weight matrix `(rows, cols)` in a ggml block format we compute ourselves. Cloning shares
/// the bytes (a tied output head and the embedding are one matrix).
#[derive(Debug, Clone)]
pub struct GgmlMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    /// Raw ggml blocks, row-major, in one or more runs of whole rows (a stacked matrix keeps
    /// its parts where they are): `(rows, bytes)`.
    parts: Vec<(usize, BlockBytes)>,
    /// Whose summation order the products follow (llama.cpp's default or its plain kernels).
    arith: Arithmetic,
}

/// The bytes of whole rows of ggml blocks: read into memory, or a range of a memory-mapped GGUF
/// file (no copy: the page cache's pages are the weights).
#[derive(Debug, Clone)]
pub enum BlockBytes {
    Owned(Arc<Vec<u8>>),
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
}

impl BlockBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }
}

/// The 32-value block types we compute. Each block stores integers `x` with one scale `d`
/// (and for Q4_1/Q5_1 an offset `m`): the weight is `d·x` or `d·x + m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
}

impl Kind {
    #[cfg(test)]
    const ALL: [Kind; 5] = [Kind::Q4_0, Kind::Q4_1, Kind::Q5_0, Kind::Q5_1, Kind::Q8_0];

    fn of(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Kind::Q4_0,
            GgmlDType::Q4_1 => Kind::Q4_1,
            GgmlDType::Q5_0 => Kind::Q5_0,
            GgmlDType::Q5_1 => Kind::Q5_1,
            GgmlDType::Q8_0 => Kind::Q8_0,
            _ => return None,
        })
    }

    /// Weight rows per tile. The 4- and 5-bit types unpack their values and their one
    /// multiply-add chain per output limits them, so two rows interleaved run faster; Q8_0 is
    /// bound by memory and gains nothing.
    fn tile_rows(self) -> usize {
        match self {
            Kind::Q8_0 => 1,
            _ => 2,
        }
    }

    fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_0 => 18, // d: f16, qs: [u8; 16]
            Kind::Q4_1 => 20, // d: f16, m: f16, qs: [u8; 16]
            Kind::Q5_0 => 22, // d: f16, qh: u32, qs: [u8; 16]
            Kind::Q5_1 => 24, // d: f16, m: f16, qh: u32, qs: [u8; 16]
            Kind::Q8_0 => 34, // d: f16, qs: [i8; 32]
        }
    }

    /// Whether the weights carry an offset `m`, so that the product also needs the activation
    /// block's sum (ggml's Q8_1 activations; the others use Q8_0, which has none).
    fn has_offset(self) -> bool {
        matches!(self, Kind::Q4_1 | Kind::Q5_1)
    }

    /// The block's scale `d` and offset `m` (0 for the types without one).
    fn scales(self, blk: &[u8]) -> (f32, f32) {
        let m = if self.has_offset() {
            f16_at(blk, 2)
        } else {
            0.0
        };
        (f16_at(blk, 0), m)
    }

    /// The exact integer dot `Σ x·q` of a weight block with an activation block.
    fn int_dot(self, blk: &[u8], y: &Q8Block) -> i32 {
        self.values(blk)
            .iter()
            .zip(&y.qs)
            .map(|(&x, &q)| x * q as i32)
            .sum()
    }

    /// The block's 32 integers in element order. The 4- and 5-bit types hold elements 0..16 in
    /// the low nibbles and 16..32 in the high nibbles of `qs`; the fifth bit of element `j` is
    /// bit `j` of `qh`; Q4_0 and Q5_0 are stored offset by 8 and 16.
    fn values(self, blk: &[u8]) -> [i32; QK] {
        let mut x = [0i32; QK];
        if self == Kind::Q8_0 {
            for (x, &q) in x.iter_mut().zip(&blk[2..34]) {
                *x = q as i8 as i32;
            }
            return x;
        }
        let qs_at = if self.has_offset() { 4 } else { 2 };
        let (qh, qs_at, bias) = match self {
            Kind::Q5_0 => (u32_at(blk, 2), qs_at + 4, 16),
            Kind::Q5_1 => (u32_at(blk, 4), qs_at + 4, 0),
            Kind::Q4_0 => (0, qs_at, 8),
            _ => (0, qs_at, 0),
        };
        for (j, &q) in blk[qs_at..qs_at + 16].iter().enumerate() {
            let hi = |k: usize| (((qh >> k) & 1) << 4) as i32;
            x[j] = (q & 0x0F) as i32 + hi(j) - bias;
            x[j + 16] = (q >> 4) as i32 + hi(j + 16) - bias;
        }
        x
    }
}

/// One block of quantized activations, scales already widened to f32.
#[derive(Debug, Clone, Copy)]
struct Q8Block {
    d: f32,
    /// `d * sum(qs)` rounded through f16, as ggml's block_q8_1 stores it (Q4_1 only).
    s: f32,
    qs: [i8; QK],
}

impl Q8Block {
    const ZERO: Self = Self {
        d: 0.0,
        s: 0.0,
        qs: [0; QK],
    };
}

/// A stored block type: one of the 32-value types, or a K-quant (256 values per block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Block(Kind),
    K(KQuant),
}

impl Format {
    fn of(dtype: GgmlDType) -> Option<Self> {
        Kind::of(dtype)
            .map(Self::Block)
            .or_else(|| KQuant::from_dtype(dtype).map(Self::K))
    }

    /// Weights per block.
    fn block_len(self) -> usize {
        match self {
            Self::Block(_) => QK,
            Self::K(_) => kquant::QK_K,
        }
    }

    fn block_bytes(self) -> usize {
        match self {
            Self::Block(k) => k.block_bytes(),
            Self::K(k) => k.block_bytes(),
        }
    }

    /// ggml's name of the type.
    fn name(self) -> &'static str {
        match self {
            Self::Block(Kind::Q4_0) => "Q4_0",
            Self::Block(Kind::Q4_1) => "Q4_1",
            Self::Block(Kind::Q5_0) => "Q5_0",
            Self::Block(Kind::Q5_1) => "Q5_1",
            Self::Block(Kind::Q8_0) => "Q8_0",
            Self::K(KQuant::Q2K) => "Q2_K",
            Self::K(KQuant::Q3K) => "Q3_K",
            Self::K(KQuant::Q4K) => "Q4_K",
            Self::K(KQuant::Q5K) => "Q5_K",
            Self::K(KQuant::Q6K) => "Q6_K",
        }
    }
}

/// Widens whole blocks of `dtype` (`bytes` holding `out.len()` values) as ggml's
/// `dequantize_row_*` does, in plain f32 operations in its order: the one dequantizer for the
/// embedding lookup and for `gen quantize`'s requantization. `false` (and nothing written) for
/// types gen does not compute.
///
/// # Panics
/// If `bytes` does not hold exactly `out.len()` values' blocks.
pub fn dequantize(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> bool {
    let Some(format) = Format::of(dtype) else {
        return false;
    };
    assert!(
        out.len().is_multiple_of(format.block_len())
            && bytes.len() == out.len() / format.block_len() * format.block_bytes(),
        "dequantize: {} bytes of {} for {} values",
        bytes.len(),
        format.name(),
        out.len()
    );
    dequantize_format(format, bytes, out);
    true
}

/// [`dequantize`] for a known format.
fn dequantize_format(format: Format, bytes: &[u8], out: &mut [f32]) {
    let kind = match format {
        Format::K(k) => return kquant::dequantize_row(k, bytes, out),
        Format::Block(kind) => kind,
    };
    for (blk, y) in bytes
        .chunks_exact(kind.block_bytes())
        .zip(out.chunks_exact_mut(QK))
    {
        let (d, m) = kind.scales(blk);
        for (y, x) in y.iter_mut().zip(kind.values(blk)) {
            *y = if kind.has_offset() {
                x as f32 * d + m
            } else {
                x as f32 * d
            };
        }
    }
}

impl GgmlMatrix {
    /// Takes over a CPU QTensor of a supported type; `None` for other types.
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Self>> {
        if !matches!(q.device(), Device::Cpu) {
            return Ok(None);
        }
        let (rows, cols) = q.shape().dims2()?;
        let data = q.data()?.into_owned();
        Self::new(q.dtype(), rows, cols, BlockBytes::Owned(Arc::new(data)))
    }

    /// A matrix of `dtype` over `bytes`; `None` for block types we do not compute ourselves.
    pub fn new(
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
        bytes: BlockBytes,
    ) -> Result<Option<Self>> {
        let Some(format) = Format::of(dtype) else {
            return Ok(None);
        };
        let len = format.block_len();
        if !cols.is_multiple_of(len) {
            bail!(
                "{} matrix has {cols} columns, not a multiple of its block size {len}",
                format.name()
            );
        }
        let want = rows * cols / len * format.block_bytes();
        let got = bytes.as_slice().len();
        if got != want {
            bail!("quantized matrix data has {got} bytes, expected {want}");
        }
        Ok(Some(Self {
            format,
            rows,
            cols,
            parts: vec![(rows, bytes)],
            arith: Arithmetic::default(),
        }))
    }

    /// The same matrix, its products following `arith`.
    pub fn with_arithmetic(mut self, arith: Arithmetic) -> Self {
        self.arith = arith;
        self
    }

    /// Whose summation order the products follow.
    pub fn arithmetic(&self) -> Arithmetic {
        self.arith
    }

    /// One matrix with the rows of `parts` one after another, when they share a block type and
    /// a width: a single product then computes all of them, with each output exactly as its
    /// own matrix would give it. `None` otherwise. The bytes are shared, not copied.
    pub fn stack(parts: &[&GgmlMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.format != first.format || p.cols != first.cols || p.arith != first.arith)
        {
            return None;
        }
        Some(Self {
            format: first.format,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            parts: parts.iter().flat_map(|p| p.parts.iter().cloned()).collect(),
            arith: first.arith,
        })
    }

    /// The rows `ids` dequantized to f32, one after another (an embedding lookup), with ggml's
    /// `dequantize_row` arithmetic (`x·d`, or `x·d + m` for the types with an offset).
    pub fn embedding(&self, flat: &[u32]) -> Result<Vec<f32>> {
        let row_bytes = self.row_bytes();
        let mut out = vec![0f32; flat.len() * self.cols];
        for (&id, y) in flat.iter().zip(out.chunks_exact_mut(self.cols)) {
            let row = self.row(id as usize, row_bytes).ok_or_else(|| {
                anyhow::anyhow!(
                    "token id {id} is outside the embedding's {} rows",
                    self.rows
                )
            })?;
            dequantize_format(self.format, row, y);
        }
        Ok(out)
    }

    /// Whether a row's sums depend on how many rows come with it: Q4_K in the repacked order,
    /// where groups of four rows sum as llama.cpp's gemm and the rest as its gemv (Q4_0's two
    /// sum alike).
    pub fn batch_changes_sums(&self) -> bool {
        self.format == Format::K(KQuant::Q4K) && self.parts.iter().any(|(r, _)| self.repacked(*r))
    }

    /// Whether a part of `rows` rows sums in the repacked order.
    fn repacked(&self, rows: usize) -> bool {
        self.arith.repack && repack::applies(self.format, rows)
    }

    /// Whose sums the products reproduce, for `-v`: llama.cpp's repacked 8×8 kernels (its
    /// default for Q4_0 and Q4_K matrices of a multiple of 8 rows) or its plain ones.
    pub fn order(&self) -> &'static str {
        if self.parts.iter().all(|(r, _)| self.repacked(*r)) {
            "ggml-exact, repacked order"
        } else {
            "ggml-exact"
        }
    }

    /// ggml's name of the stored block type.
    pub fn type_name(&self) -> &'static str {
        self.format.name()
    }

    /// Output features (weight rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (weight columns).
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.format.block_len() * self.format.block_bytes()
    }

    /// Row `i`'s bytes, wherever its part lies.
    fn row(&self, mut i: usize, row_bytes: usize) -> Option<&[u8]> {
        for (rows, bytes) in &self.parts {
            if i < *rows {
                return bytes.as_slice().get(i * row_bytes..(i + 1) * row_bytes);
            }
            i -= rows;
        }
        None
    }

    /// The product `x · selfᵀ` for `x` holding `m` rows of `cols` values, row-major:
    /// returns `m` rows of `rows` values.
    pub fn matmul(&self, xs: &[f32]) -> Result<Vec<f32>> {
        let k = self.cols;
        if !xs.len().is_multiple_of(k) {
            bail!(
                "matmul input has {} values, not whole rows of the {k} features the weight expects",
                xs.len()
            );
        }
        let m = xs.len() / k;
        let n = self.rows;
        let mut out = vec![0f32; m * n];
        let dst = Out::new(out.as_mut_ptr(), n);
        let blocks = k / self.format.block_len();
        match self.format {
            Format::Block(kind) => {
                let mut acts = vec![Q8Block::ZERO; m * blocks];
                for (row, out) in xs.chunks(k).zip(acts.chunks_mut(blocks)) {
                    quantize_into(row, kind, out);
                }
                let rows: Vec<&[Q8Block]> = acts.chunks(blocks).collect();
                let groups: Vec<&[&[Q8Block]]> = rows.chunks(TILE_R).collect();
                let row_bytes = self.row_bytes();
                let any_repacked = self.parts.iter().any(|(r, _)| self.repacked(*r));
                let bias = if any_repacked {
                    repack::biases(&rows)
                } else {
                    Vec::new()
                };
                self.each_task(&|w, first, repacked| {
                    // SAFETY: this task writes only its own columns `first..` (one per row of
                    // `w`), within `n`, of rows within `m`, and `out` outlives the tasks. A
                    // task's rows start at a multiple of 16 of its part, so a repacked part
                    // (a multiple of 8 rows) gives whole groups of 8.
                    unsafe {
                        if repacked {
                            repack::fill_task(w, row_bytes, &groups, &bias, dst, first)
                        } else {
                            fill_task(kind, w, row_bytes, &groups, dst, first)
                        }
                    };
                });
            }
            Format::K(kind) => {
                let mut acts = vec![kquant::Q8KBlock::ZERO; m * blocks];
                for (row, out) in xs.chunks(k).zip(acts.chunks_mut(blocks)) {
                    kquant::quantize_q8k(row, out);
                }
                let rows: Vec<&[kquant::Q8KBlock]> = acts.chunks(blocks).collect();
                let row_bytes = self.row_bytes();
                // Each weight row meets every activation row, one group of four at a time.
                // Against a whole prompt's activations at once (a megabyte for 512 rows of
                // 1,536) every weight row would stream them from L2 again; in runs of
                // `chunk` rows that fit in L1 beside the task's weight rows, they are read
                // from L1 (docs/PERFORMANCE.md). Runs are whole groups of four, so every
                // group, and so the repacked order's sums, stays as it was.
                let act_bytes = blocks * std::mem::size_of::<kquant::Q8KBlock>();
                let chunk =
                    (L1_ACTIVATION_BYTES / act_bytes / kquant::MAX_ROWS).max(1) * kquant::MAX_ROWS;
                self.each_task(&|w, first, repacked| {
                    let mut tile = [0f32; kquant::MAX_ROWS];
                    for (c, run) in rows.chunks(chunk).enumerate() {
                        for (j, wrow) in w.chunks_exact(row_bytes).enumerate() {
                            for (g, group) in run.chunks(kquant::MAX_ROWS).enumerate() {
                                let tile = &mut tile[..group.len()];
                                if repacked {
                                    kquant::dot_rows_repacked(wrow, group, tile);
                                } else {
                                    kquant::dot_rows(kind, wrow, group, tile);
                                }
                                let row0 = c * chunk + g * kquant::MAX_ROWS;
                                for (r, &v) in tile.iter().enumerate() {
                                    // SAFETY: as above; row `row0 + r` is within `m`.
                                    unsafe { dst.write(row0 + r, first + j, v) };
                                }
                            }
                        }
                    }
                });
            }
        }
        Ok(out)
    }

    /// Runs `task(w, first, repacked)` on the pool for runs of up to 16 weight rows `w` (whole
    /// rows, inside one part, starting at a multiple of 16 of it), `first` being the output
    /// column of the run's first row and `repacked` whether its part (the matrix it was) sums
    /// in the repacked order.
    fn each_task(&self, task: &(dyn Fn(&[u8], usize, bool) + Sync)) {
        const ROWS_PER_TASK: usize = 16;
        let row_bytes = self.row_bytes();
        let mut tasks = Vec::with_capacity(self.rows.div_ceil(ROWS_PER_TASK) + self.parts.len());
        let mut col = 0;
        for (p, (rows, _)) in self.parts.iter().enumerate() {
            tasks.extend((0..*rows).step_by(ROWS_PER_TASK).map(|r| (p, r, col + r)));
            col += rows;
        }
        crate::kernels::pool::run(tasks.len(), &|t| {
            let (p, r, first) = tasks[t];
            let (rows, bytes) = &self.parts[p];
            let last = (r + ROWS_PER_TASK).min(*rows);
            task(
                &bytes.as_slice()[r * row_bytes..last * row_bytes],
                first,
                self.repacked(*rows),
            );
        });
    }
}

/// The activation bytes a K-quant task keeps in L1 at a time (half of a 32 KiB L1 data cache,
/// the rest for the task's weight rows and its stack).
const L1_ACTIVATION_BYTES: usize = 16 * 1024;

/// Quantizes one activation row into `out` (`x.len() / 32` blocks), through the fastest
/// kernel this CPU has; every kernel gives the same blocks.
fn quantize_into(x: &[f32], kind: Kind, out: &mut [Q8Block]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::simd::avx2_fma_f16c() {
            // SAFETY: the CPU supports AVX2 and F16C (checked just above).
            unsafe { avx2::quantize_into(x, kind, out) };
            return;
        }
    }
    for (b, o) in x.chunks_exact(QK).zip(out) {
        *o = quantize_block(b, kind);
    }
}

/// ggml's `quantize_row_q8_1` / `quantize_row_q8_0` for one block of 32: `d = amax / 127`,
/// values times `id = 127 / amax` rounded half to even, and for Q8_1 `s = d * sum(qs)`, each
/// scale rounded through f16 as ggml stores it.
fn quantize_block(b: &[f32], kind: Kind) -> Q8Block {
    let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; QK];
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(b) {
        *q = (v * id).round_ties_even() as i8;
        sum += *q as i32;
    }
    let s = if kind.has_offset() {
        f16::from_f32(d * sum as f32).to_f32()
    } else {
        0.0
    };
    Q8Block {
        d: f16::from_f32(d).to_f32(),
        s,
        qs,
    }
}

#[cfg(test)]
fn quantize_row(x: &[f32], kind: Kind) -> Vec<Q8Block> {
    let mut out = vec![Q8Block::ZERO; x.len() / QK];
    quantize_into(x, kind, &mut out);
    out
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Weight rows per tile, at most: two independent accumulation chains per activation row hide
/// the latency of the multiply-add chain when there is only one activation row; the VNNI
/// kernels of the signed types take four (their per-row work is smaller, and AVX512VL's 32
/// registers hold the 16 accumulators).
const TILE_W: usize = 4;
/// Activation rows per tile (beams, a batch of prompts, prefill chunks).
const TILE_R: usize = 4;

/// One tile's results: `[weight row][activation row]`.
type Tile = [[f32; TILE_R]; TILE_W];

/// Writes the outputs of the weight rows in `w` (columns `first..` of `out`) for every
/// activation row, through the fastest kernel this CPU has.
///
/// # Safety
/// As [`Out::write`] for columns `first..first + w.len() / row_bytes` and the rows in `groups`.
unsafe fn fill_task(
    kind: Kind,
    w: &[u8],
    row_bytes: usize,
    groups: &[&[&[Q8Block]]],
    out: Out,
    first: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(dot) = crate::kernels::simd::byte_dot() {
            let wide = crate::kernels::simd::avx512_tiles();
            // SAFETY: the CPU supports AVX2, FMA and `dot`'s instructions (detected by
            // `byte_dot`), and AVX512 F and BW when `wide` (`avx512_tiles`); the caller's
            // contract covers the writes.
            unsafe { avx2::fill_task(dot, wide, kind, w, row_bytes, groups, out, first) };
            return;
        }
    }
    // SAFETY: the caller's contract.
    unsafe {
        fill_tiles(1, w, row_bytes, groups, out, first, |ws, a, out| {
            for (o, w) in out.iter_mut().zip(ws) {
                for (o, a) in o.iter_mut().zip(a) {
                    *o = dot_scalar(kind, w, a);
                }
            }
        })
    };
}

/// Walks the weight rows in `w` in tiles of up to `tile_w` rows by [`TILE_R`] activation rows:
/// each weight block is unpacked once per tile and each activation block loaded once per tile,
/// while every (weight row, activation row) pair accumulates exactly as a single-row product.
///
/// # Safety
/// As [`fill_task`].
#[inline(always)]
unsafe fn fill_tiles(
    tile_w: usize,
    w: &[u8],
    row_bytes: usize,
    groups: &[&[&[Q8Block]]],
    dst: Out,
    first: usize,
    mut tile: impl FnMut(&[&[u8]], &[&[Q8Block]], &mut Tile),
) {
    let rows = w.len() / row_bytes;
    let mut out = [[0f32; TILE_R]; TILE_W];
    for j in (0..rows).step_by(tile_w) {
        let wn = tile_w.min(rows - j);
        let mut ws: [&[u8]; TILE_W] = [&[]; TILE_W];
        for (wi, slot) in ws.iter_mut().take(wn).enumerate() {
            *slot = &w[(j + wi) * row_bytes..(j + wi + 1) * row_bytes];
        }
        for (g, a) in groups.iter().enumerate() {
            tile(&ws[..wn], a, &mut out);
            for (wi, row) in out.iter().take(wn).enumerate() {
                for (r, &v) in row.iter().take(a.len()).enumerate() {
                    // SAFETY: the caller's contract.
                    unsafe { dst.write(g * TILE_R + r, first + j + wi, v) };
                }
            }
        }
    }
}

/// The portable product of one weight row and one activation row, in ggml's generic order:
/// `Σ d·d_y·Σx·y` over blocks, plus `Σ m·s` for the types with an offset.
fn dot_scalar(kind: Kind, w: &[u8], a: &[Q8Block]) -> f32 {
    let mut acc = 0f32;
    let mut summs = 0f32;
    for (blk, y) in w.chunks_exact(kind.block_bytes()).zip(a) {
        let (d, m) = kind.scales(blk);
        acc += d * y.d * kind.int_dot(blk, y) as f32;
        summs += m * y.s;
    }
    acc + summs
}

mod arith;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub(crate) mod kquant;
mod repack;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernels::test_values as row;

    /// Every block type we compute, with candle's name for it.
    const TYPES: [(GgmlDType, Kind); 5] = [
        (GgmlDType::Q4_0, Kind::Q4_0),
        (GgmlDType::Q4_1, Kind::Q4_1),
        (GgmlDType::Q5_0, Kind::Q5_0),
        (GgmlDType::Q5_1, Kind::Q5_1),
        (GgmlDType::Q8_0, Kind::Q8_0),
    ];

    impl GgmlMatrix {
        /// The product of a 2-d tensor, as a tensor.
        fn forward(&self, x: &Tensor) -> Result<Tensor> {
            let m = x.dims()[0];
            let y = self.matmul(&x.flatten_all()?.to_vec1::<f32>()?)?;
            Ok(Tensor::from_vec(y, (m, self.rows), x.device())?)
        }
    }

    /// Rows computed together (beams, prompt batches) give bit-for-bit the single-row result.
    #[test]
    fn batched_rows_equal_single_rows_exactly() {
        for (dt, _) in TYPES {
            let (n, k, m) = (40, 96, 6);
            let w = Tensor::from_vec(row(n * k, 5), (n, k), &Device::Cpu).unwrap();
            let mat = GgmlMatrix::from_qtensor(&QTensor::quantize(&w, dt).unwrap())
                .unwrap()
                .unwrap();
            let x = Tensor::from_vec(row(m * k, 11), (m, k), &Device::Cpu).unwrap();
            let all = mat.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            for (i, got) in all.iter().enumerate() {
                let one = mat.forward(&x.narrow(0, i, 1).unwrap()).unwrap();
                assert_eq!(got, &one.to_vec2::<f32>().unwrap()[0], "{dt:?} row {i}");
            }
        }
    }

    /// Our product against dequantized weights times quantized-then-dequantized activations.
    #[test]
    fn matches_dequantized_reference() {
        for (dt, kind) in TYPES {
            let (n, k, m) = (40, 96, 3);
            let w = Tensor::from_vec(row(n * k, 7), (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dt).unwrap();
            let mat = GgmlMatrix::from_qtensor(&q).unwrap().unwrap();
            let x = Tensor::from_vec(row(m * k, 99), (m, k), &Device::Cpu).unwrap();
            let got = mat.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let wd = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let xs = x.to_vec2::<f32>().unwrap();
            for i in 0..m {
                let xq: Vec<f32> = quantize_row(&xs[i], kind)
                    .iter()
                    .flat_map(|b| b.qs.map(|q| q as f32 * b.d))
                    .collect();
                for r in 0..n {
                    let want: f32 = wd[r].iter().zip(&xq).map(|(a, b)| a * b).sum();
                    assert!(
                        (got[i][r] - want).abs() < 2e-3,
                        "{dt:?} [{i},{r}]: {} vs {want}",
                        got[i][r]
                    );
                }
            }
        }
    }

    /// Only repacked Q4_K sums a row differently with others (gemm for groups of four, gemv
    /// for the rest), and says so; repacked Q4_0 sums alike either way.
    #[test]
    fn repacked_q4k_reports_batch_dependent_sums() {
        let (n, k) = (16, 512);
        let w = Tensor::from_vec(row(n * k, 9), (n, k), &Device::Cpu).unwrap();
        let x = Tensor::from_vec(row(4 * k, 3), (4, k), &Device::Cpu).unwrap();
        for (dt, changes) in [(GgmlDType::Q4K, true), (GgmlDType::Q4_0, false)] {
            let q = QTensor::quantize(&w, dt).unwrap();
            let mat = GgmlMatrix::from_qtensor(&q).unwrap().unwrap();
            assert_eq!(mat.batch_changes_sums(), changes, "{dt:?}");
            let plain = mat.clone().with_arithmetic(Arithmetic::PLAIN);
            assert!(!plain.batch_changes_sums(), "{dt:?} plain");
            let all = mat.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let first = mat.forward(&x.narrow(0, 0, 1).unwrap()).unwrap();
            let first = first.to_vec2::<f32>().unwrap();
            let diff = all[0].iter().zip(&first[0]).any(|(a, b)| a != b);
            assert!(diff || !changes, "{dt:?}: four rows summed as one");
            assert!(!diff || changes, "{dt:?}: four rows not summed as one");
        }
    }

    /// A stacked matrix gives each part's own product, bit for bit.
    #[test]
    fn stacked_rows_equal_separate_products() {
        let k = 64;
        let parts: Vec<GgmlMatrix> = [24, 8, 8]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let w = Tensor::from_vec(row(n * k, i as u32), (n, k), &Device::Cpu).unwrap();
                GgmlMatrix::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap())
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let stacked = GgmlMatrix::stack(&parts.iter().collect::<Vec<_>>()).unwrap();
        let x = Tensor::from_vec(row(3 * k, 5), (3, k), &Device::Cpu).unwrap();
        let all = stacked.forward(&x).unwrap();
        let mut at = 0;
        for p in &parts {
            let got = all.narrow(1, at, p.rows).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(got, p.forward(&x).unwrap().to_vec2::<f32>().unwrap());
            at += p.rows;
        }
        let q8 = Tensor::from_vec(row(8 * k, 1), (8, k), &Device::Cpu).unwrap();
        let q8 = GgmlMatrix::from_qtensor(&QTensor::quantize(&q8, GgmlDType::Q8_0).unwrap())
            .unwrap()
            .unwrap();
        assert!(
            GgmlMatrix::stack(&[&parts[0], &q8]).is_none(),
            "mixed block types"
        );
    }

    /// The embedding lookup gives candle's (and ggml's) dequantized rows exactly, across the
    /// parts of a stacked matrix, and rejects ids past the last row.
    #[test]
    fn embedding_rows_equal_dequantized_rows() {
        let k = 64;
        for (dt, _) in TYPES {
            let parts: Vec<(QTensor, GgmlMatrix)> = [5usize, 3]
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let w =
                        Tensor::from_vec(row(n * k, 40 + i as u32), (n, k), &Device::Cpu).unwrap();
                    let q = QTensor::quantize(&w, dt).unwrap();
                    let g = GgmlMatrix::from_qtensor(&q).unwrap().unwrap();
                    (q, g)
                })
                .collect();
            let stacked = GgmlMatrix::stack(&[&parts[0].1, &parts[1].1]).unwrap();
            let want: Vec<Vec<f32>> = parts
                .iter()
                .flat_map(|(q, _)| {
                    q.dequantize(&Device::Cpu)
                        .unwrap()
                        .to_vec2::<f32>()
                        .unwrap()
                })
                .collect();
            let ids = [7u32, 0, 4, 5, 2, 7];
            let got = stacked.embedding(&ids).unwrap();
            assert_eq!(got.len(), ids.len() * k);
            for (g, &id) in got.chunks(k).zip(&ids) {
                assert_eq!(g, &want[id as usize], "{dt:?} row {id}");
            }
            let err = stacked.embedding(&[8]).unwrap_err().to_string();
            assert!(err.contains("token id 8"), "{err}");
        }
    }

    /// A matrix over a memory-mapped file computes what the same bytes in memory compute.
    #[test]
    fn mapped_bytes_equal_owned_bytes() {
        use std::io::Write;
        let (n, k) = (48, 96);
        let w = Tensor::from_vec(row(n * k, 77), (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let bytes = q.data().unwrap().into_owned();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[0u8; 7]).unwrap(); // an unaligned start, as GGUF offsets can be
        file.write_all(&bytes).unwrap();
        // SAFETY: a private temporary file nobody else writes.
        let map = Arc::new(unsafe { Mmap::map(&file) }.unwrap());
        let mapped = BlockBytes::Mapped {
            map,
            start: 7,
            len: bytes.len(),
        };
        let mapped = GgmlMatrix::new(GgmlDType::Q4_1, n, k, mapped)
            .unwrap()
            .unwrap();
        let owned = GgmlMatrix::from_qtensor(&q).unwrap().unwrap();
        let x = Tensor::from_vec(row(3 * k, 5), (3, k), &Device::Cpu).unwrap();
        assert_eq!(
            mapped.forward(&x).unwrap().to_vec2::<f32>().unwrap(),
            owned.forward(&x).unwrap().to_vec2::<f32>().unwrap()
        );
        let short = BlockBytes::Owned(Arc::new(bytes[1..].to_vec()));
        assert!(GgmlMatrix::new(GgmlDType::Q4_1, n, k, short).is_err());
    }

    /// The SIMD kernels and the portable fallback agree (the fallback runs on CPUs without
    /// AVX2, which this machine is not).
    #[test]
    fn simd_and_scalar_dots_agree() {
        let k = 256;
        let w = Tensor::from_vec(row(k, 3), (1, k), &Device::Cpu).unwrap();
        let x = row(k, 11);
        for (dt, kind) in TYPES {
            let q = QTensor::quantize(&w, dt).unwrap();
            let bytes = q.data().unwrap().into_owned();
            let a = quantize_row(&x, kind);
            let mut fast = [0f32];
            let out = Out {
                ptr: fast.as_mut_ptr(),
                n: 1,
            };
            // SAFETY: one output, written by this one call.
            unsafe { fill_task(kind, &bytes, bytes.len(), &[&[a.as_slice()]], out, 0) };
            let fast = fast[0];
            let slow = dot_scalar(kind, &bytes, &a);
            assert!(
                (fast - slow).abs() <= 1e-4 * slow.abs().max(1.0),
                "{dt:?}: {fast} vs {slow}"
            );
        }
    }

    /// Every byte-product instruction this CPU has (AVX2's maddubs/madd, VNNI's dpbusd, the
    /// biased VNNI kernels of the signed types, their 512-bit tiles) gives the same outputs
    /// bit for bit, for every tile shape (1 to 7 weight rows: tiles of 1 to 4 and their tails;
    /// 1 to 5 activation rows).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn byte_dot_instructions_agree_bit_for_bit() {
        use crate::kernels::simd::ByteDot;
        if crate::kernels::simd::byte_dot().is_none() {
            return; // no SIMD kernels on this CPU: nothing to compare
        }
        let has = |f: &str| match f {
            "avx512vnni" => {
                std::is_x86_feature_detected!("avx512vnni")
                    && std::is_x86_feature_detected!("avx512vl")
            }
            _ => std::is_x86_feature_detected!("avxvnni"),
        };
        let mut dots = vec![ByteDot::Madd];
        if has("avx512vnni") {
            dots.push(ByteDot::Avx512Vnni);
        }
        if has("avxvnni") {
            dots.push(ByteDot::AvxVnni);
        }
        // The 512-bit tiles (AVX512 F and BW besides VNNI), compared too where the CPU has them.
        let wide = has("avx512vnni")
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw");
        let k = 128;
        let shapes = (1..=7).flat_map(|n| (1..=5).map(move |m| (n, m)));
        let cases = TYPES
            .into_iter()
            .flat_map(|t| shapes.clone().map(move |s| (t, s)));
        let mut checked = 0;
        for ((dt, kind), (n, m)) in cases {
            checked += 1;
            let w = Tensor::from_vec(row(n * k, 13), (n, k), &Device::Cpu).unwrap();
            let bytes = QTensor::quantize(&w, dt)
                .unwrap()
                .data()
                .unwrap()
                .into_owned();
            // Extreme activations: values at ±amax make ±127 bytes, the largest pair sums.
            let mut x = row(m * k, 17);
            x[3] = 40.0;
            x[(m - 1) * k + 9] = -40.0;
            let acts: Vec<Q8Block> = x.chunks(k).flat_map(|r| quantize_row(r, kind)).collect();
            let rows: Vec<&[Q8Block]> = acts.chunks(k / QK).collect();
            let groups: Vec<&[&[Q8Block]]> = rows.chunks(TILE_R).collect();
            let run = |dot: ByteDot, wide: bool| {
                let mut out = vec![0f32; m * n];
                let dst = Out {
                    ptr: out.as_mut_ptr(),
                    n,
                };
                // SAFETY: the CPU has `dot` (listed above); one call writes every output.
                unsafe {
                    let rb = bytes.len() / n;
                    avx2::fill_task(dot, wide, kind, &bytes, rb, &groups, dst, 0)
                };
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            let want = run(ByteDot::Madd, false);
            for &dot in &dots[1..] {
                assert_eq!(run(dot, false), want, "{kind:?} with {dot:?}, {n} × {m}");
            }
            if wide {
                let got = run(ByteDot::Avx512Vnni, true);
                assert_eq!(got, want, "{kind:?}, 512-bit tiles, {n} × {m}");
            }
        }
        assert_eq!(checked, TYPES.len() * 35);
    }

    /// The SIMD quantization gives exactly the portable one's blocks, ties and zeros included.
    #[test]
    fn simd_and_scalar_quantization_agree() {
        let mut x = row(32 * 64, 21);
        // Blocks whose products land exactly on .5 (amax 127 makes id 1), an all-zero block,
        // and a block of one huge value.
        for (i, v) in x[..32].iter_mut().enumerate() {
            *v = if i == 0 { 127.0 } else { i as f32 - 15.5 };
        }
        x[32..64].fill(0.0);
        x[64..96].iter_mut().for_each(|v| *v *= 1e-3);
        x[70] = 3e4;
        for kind in Kind::ALL {
            let fast = quantize_row(&x, kind);
            for (i, (f, b)) in fast.iter().zip(x.chunks_exact(QK)).enumerate() {
                let slow = quantize_block(b, kind);
                assert_eq!(
                    (f.d.to_bits(), f.s.to_bits(), f.qs),
                    (slow.d.to_bits(), slow.s.to_bits(), slow.qs),
                    "{kind:?} block {i}"
                );
            }
        }
    }

    #[test]
    fn quantization_rounds_half_to_even_with_127_over_amax() {
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        let b = &quantize_row(&x, Kind::Q8_0)[0];
        assert_eq!((b.qs[0], b.qs[1], b.qs[2]), (127, 2, -4));
    }
}
