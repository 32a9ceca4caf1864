//! Linear layers over the weights as stored ([`Matrix`]): our kernels for the quantized block
//! types we compute and for dense weights with few activation rows, candle's products for the
//! rest; and [`Projections`], several layers of one input run as one product.

use crate::kernels::dense;
use crate::kernels::ggml::GgmlMatrix;
use crate::weights::Matrix;
use anyhow::{bail, Result};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Storage, Tensor};

/// A weight matrix used as a linear layer: ggml-exact kernels for the block types we compute
/// ourselves ([`GgmlMatrix`]), candle's `QMatMul` for everything else (dense and other quants).
#[derive(Debug, Clone)]
pub enum Linear {
    Ggml(GgmlMatrix),
    Candle(QMatMul),
    /// GGUF f32, f16 or bf16 weights, multiplied as llama.cpp does ([`Matrix::GgmlDense`]).
    GgmlDense(Tensor),
}

impl Linear {
    /// Wraps a candle matrix, moving the quantized types our kernels compute to them.
    pub fn new(m: QMatMul) -> Result<Self> {
        Ok(Matrix::new(m)?.into())
    }

    /// `x @ Wᵀ` over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Ggml(g) => {
                let dims = x.dims();
                let Some((&k, lead)) = dims.split_last() else {
                    bail!("matmul input must have at least one dimension");
                };
                if k != g.cols() {
                    bail!(
                        "matmul input has {k} features, the weight expects {}",
                        g.cols()
                    );
                }
                let y = g.matmul(&x.flatten_all()?.to_vec1::<f32>()?)?;
                let mut shape = lead.to_vec();
                shape.push(g.rows());
                Ok(Tensor::from_vec(y, shape, x.device())?)
            }
            Self::Candle(QMatMul::Tensor(w)) => {
                if let Some(y) = dense_few_rows(x, w)? {
                    return Ok(y);
                }
                // bf16/f16 weights (kept so on the CPU) widen for candle's product, whose
                // operands share one type; at prefill sizes that is a small part of the work.
                let w = QMatMul::Tensor(w.to_dtype(DType::F32)?);
                Ok(candle_core::Module::forward(&w, x)?)
            }
            Self::Candle(m) => Ok(candle_core::Module::forward(m, x)?),
            Self::GgmlDense(w) => ggml_dense(x, w),
        }
    }

    /// Whether a product over `rows` input rows runs on rayon's pool (candle's kernels: dense
    /// weights beyond [`dense::MAX_ROWS`] rows, quantized types we have no kernel for)
    /// rather than on ours ([`crate::kernels::pool`]).
    pub fn on_rayon(&self, rows: usize) -> bool {
        match self {
            Self::Ggml(_) => false,
            Self::Candle(QMatMul::Tensor(_)) => rows > dense::MAX_ROWS,
            Self::GgmlDense(_) => false,
            Self::Candle(_) => true,
        }
    }

    /// Whether a row's sums depend on how many rows come with it: GGUF f32/f16 matrices, which
    /// sum one row in ggml's `vec_dot` order and several in tinyBLAS's, and Q4_K in llama.cpp's
    /// repacked order (gemm for groups of four, gemv for the rest).
    pub fn batch_changes_sums(&self) -> bool {
        match self {
            Self::GgmlDense(_) => true,
            Self::Ggml(g) => g.batch_changes_sums(),
            Self::Candle(_) => false,
        }
    }

    /// The stored type and the kernel its products run on, for `-v` (`"Q5_0, ggml-exact"`).
    pub fn kernel(&self) -> String {
        match self {
            Self::Ggml(g) => format!("{}, {}", g.type_name(), g.order()),
            Self::Candle(QMatMul::Tensor(w)) => format!("{:?}, dense", w.dtype()),
            Self::Candle(QMatMul::TensorF16(w)) => format!("{:?}, dense", w.dtype()),
            Self::Candle(QMatMul::QTensor(q)) => format!("{:?}, candle", q.dtype()),
            Self::GgmlDense(w) => format!("{:?}, ggml-order dense", w.dtype()),
        }
    }

    /// The rows `ids` as f32 vectors (an embedding lookup), shaped `ids.dims() + [cols]`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Ggml(g) => {
                let flat = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
                let y = g.embedding(&flat)?;
                let mut shape = ids.dims().to_vec();
                shape.push(g.cols());
                Ok(Tensor::from_vec(y, shape, ids.device())?)
            }
            Self::Candle(m) => Ok(m.embedding(ids)?.to_dtype(DType::F32)?),
            Self::GgmlDense(w) => {
                let flat = ids.flatten_all()?.to_dtype(DType::U32)?;
                let mut shape = ids.dims().to_vec();
                shape.push(w.dim(1)?);
                Ok(w.index_select(&flat, 0)?
                    .to_dtype(DType::F32)?
                    .reshape(shape)?)
            }
        }
    }

    /// One matrix with the rows of `parts` one after another, when they can run as a single
    /// product (our quantized kernels with one block type, GGUF f32/f16 of one type, or dense
    /// weights); `None` for other quantized types, which stay separate.
    fn stack(parts: &[Linear]) -> Result<Option<Linear>> {
        let ggml: Option<Vec<&GgmlMatrix>> = parts
            .iter()
            .map(|p| match p {
                Self::Ggml(g) => Some(g),
                _ => None,
            })
            .collect();
        if let Some(g) = ggml {
            return Ok(GgmlMatrix::stack(&g).map(Self::Ggml));
        }
        // GGUF f32/f16 matrices of one stored type (a file may mix them).
        let ggml_dense: Option<Vec<&Tensor>> = parts
            .iter()
            .map(|p| match p {
                Self::GgmlDense(t) => Some(t),
                _ => None,
            })
            .collect();
        let ggml_dense = ggml_dense.filter(|d| d.iter().all(|t| t.dtype() == d[0].dtype()));
        if let Some(d) = ggml_dense {
            return Ok(Some(Self::GgmlDense(Tensor::cat(&d, 0)?)));
        }
        let dense: Option<Vec<&Tensor>> = parts
            .iter()
            .map(|p| match p {
                Self::Candle(QMatMul::Tensor(t)) => Some(t),
                _ => None,
            })
            .collect();
        // One stored type for all parts (a file may mix them).
        let dense = dense.filter(|d| d.iter().all(|t| t.dtype() == d[0].dtype()));
        Ok(match dense {
            Some(d) => Some(Self::Candle(QMatMul::Tensor(Tensor::cat(&d, 0)?))),
            None => None,
        })
    }
}

impl From<Matrix> for Linear {
    fn from(m: Matrix) -> Self {
        match m {
            Matrix::Ggml(g) => Self::Ggml(g),
            Matrix::Candle(c) => Self::Candle(c),
            Matrix::GgmlDense(t) => Self::GgmlDense(t),
        }
    }
}

/// `x · wᵀ` through [`dense`] when `x` has at most [`dense::MAX_ROWS`] rows, `x`
/// is f32 and `w` f32, bf16 or f16, both on the CPU (a decode step, beams); `None` otherwise.
fn dense_few_rows(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let dims = x.dims();
    let Some((&k, lead)) = dims.split_last() else {
        return Ok(None);
    };
    let m: usize = lead.iter().product();
    if m > dense::MAX_ROWS
        || !x.device().is_cpu()
        || x.dtype() != DType::F32
        || w.rank() != 2
        || w.dims()[1] != k
    {
        return Ok(None);
    }
    let (storage, layout) = w.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Ok(None);
    };
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let y = match w.dtype() {
        DType::F32 => dense::matmul(&xs, &cpu.as_slice::<f32>()?[start..end], k),
        DType::BF16 => dense::matmul(&xs, &cpu.as_slice::<half::bf16>()?[start..end], k),
        DType::F16 => dense::matmul(&xs, &cpu.as_slice::<half::f16>()?[start..end], k),
        _ => return Ok(None),
    };
    let mut shape = lead.to_vec();
    shape.push(w.dims()[0]);
    Ok(Some(Tensor::from_vec(y, shape, x.device())?))
}

/// `x · wᵀ` for GGUF f32/f16/bf16 weights as llama.cpp computes it: for f16 (bf16) weights the
/// activations are rounded to f16 (bf16) first (ggml's `vec_dot_type`), then the sums run in
/// ggml's order ([`dense::matmul_as_ggml`]).
fn ggml_dense(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let Some((&k, lead)) = dims.split_last() else {
        bail!("matmul input must have at least one dimension");
    };
    let (n, wk) = w.dims2()?;
    if wk != k {
        bail!("matmul input has {k} features, the weight expects {wk}");
    }
    let mut xs = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let (storage, layout) = w.storage_and_layout();
    let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
        bail!("internal: GGUF dense weights must be contiguous on the CPU");
    };
    let y = match w.dtype() {
        DType::F16 => {
            xs.iter_mut()
                .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
            dense::matmul_as_ggml(&xs, &cpu.as_slice::<half::f16>()?[start..end], k)
        }
        DType::BF16 => {
            // ggml's `vec_dot_type` for BF16 is BF16: activations rounded as ggml rounds them.
            xs.iter_mut().for_each(|v| {
                *v = crate::quant::fp::bf16_to_f32(crate::quant::fp::f32_to_bf16(*v))
            });
            dense::matmul_as_ggml(&xs, &cpu.as_slice::<half::bf16>()?[start..end], k)
        }
        DType::F32 => dense::matmul_as_ggml(&xs, &cpu.as_slice::<f32>()?[start..end], k),
        other => bail!("internal: GGUF dense weights of type {other:?}"),
    };
    let mut shape = lead.to_vec();
    shape.push(n);
    Ok(Tensor::from_vec(y, shape, x.device())?)
}

/// Projections of one input (attention's q, k and v; the MLP's gate and up): one product over
/// their stacked rows when the weights allow, so the input is prepared once and the threads
/// meet once, else one product each.
pub enum Projections {
    Stacked { w: Linear, sizes: Vec<usize> },
    Separate(Vec<Linear>),
}

impl Projections {
    /// `parts` with their output sizes.
    pub fn new(parts: Vec<(Linear, usize)>) -> Result<Self> {
        let sizes: Vec<usize> = parts.iter().map(|(_, n)| *n).collect();
        let parts: Vec<Linear> = parts.into_iter().map(|(l, _)| l).collect();
        Ok(match Linear::stack(&parts)? {
            Some(w) => Self::Stacked { w, sizes },
            None => Self::Separate(parts),
        })
    }

    /// One stored matrix whose rows are the projections, `sizes` rows each (Phi-3's fused q/k/v
    /// and gate/up).
    pub fn fused(w: Linear, sizes: Vec<usize>) -> Self {
        Self::Stacked { w, sizes }
    }

    /// [`Linear::kernel`] of each stored matrix (a stacked one counts once per part).
    pub fn kernels(&self) -> Vec<String> {
        match self {
            Self::Stacked { w, sizes } => vec![w.kernel(); sizes.len()],
            Self::Separate(parts) => parts.iter().map(Linear::kernel).collect(),
        }
    }

    /// [`Linear::on_rayon`] for any of the projections.
    pub fn on_rayon(&self, rows: usize) -> bool {
        match self {
            Self::Stacked { w, .. } => w.on_rayon(rows),
            Self::Separate(parts) => parts.iter().any(|p| p.on_rayon(rows)),
        }
    }

    /// [`Linear::batch_changes_sums`] for any of the projections.
    pub fn batch_changes_sums(&self) -> bool {
        match self {
            Self::Stacked { w, .. } => w.batch_changes_sums(),
            Self::Separate(parts) => parts.iter().any(Linear::batch_changes_sums),
        }
    }

    /// Each projection of `x`, in the order given to [`Projections::new`].
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Stacked { w, sizes } => {
                let all = w.forward(x)?;
                let last = all.rank() - 1;
                let mut at = 0;
                sizes
                    .iter()
                    .map(|&n| {
                        let part = all.narrow(last, at, n)?;
                        at += n;
                        Ok(part)
                    })
                    .collect()
            }
            Self::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
        }
    }
}
