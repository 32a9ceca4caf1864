//! Attention for one new token per sequence (the decode step) on the CPU, reading the KV cache
//! where it lies. The general path (batched matmuls, a softmax op, reshapes) costs a dozen small
//! ops and copies per layer, and candle runs a separate tiny GEMM for every (sequence, KV head)
//! pair; here each query head is one pass over its cached keys and values. Prefill (several
//! tokens) keeps the matmul path, where GEMM pays off.

use anyhow::{bail, Context, Result};
use candle_core::{CpuStorage, Device, Storage, Tensor};
use rayon::prelude::*;

/// Work (multiply-adds) below which one thread does it all: splitting costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 17;

/// A strided f32 view of a 4-d CPU tensor.
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    stride: [usize; 4],
}

impl<'a> View<'a> {
    fn row(&self, i: usize, j: usize, k: usize, len: usize) -> &'a [f32] {
        let start = self.offset + i * self.stride[0] + j * self.stride[1] + k * self.stride[2];
        &self.data[start..start + len]
    }
}

fn view<'a>(storage: &'a Storage, t: &Tensor, what: &str) -> Result<View<'a>> {
    let Storage::Cpu(CpuStorage::F32(data)) = storage else {
        bail!("decode attention: {what} must be f32 on the CPU");
    };
    let layout = t.layout();
    let stride: [usize; 4] = layout
        .stride()
        .try_into()
        .ok()
        .with_context(|| format!("decode attention: {what} must have 4 dimensions"))?;
    if stride[3] != 1 {
        bail!("decode attention: {what} rows must be contiguous");
    }
    Ok(View {
        data,
        offset: layout.start_offset(),
        stride,
    })
}

/// `softmax(q·kᵀ · scale) · v` for one query position per sequence, with grouped-query heads.
///
/// `q`: `(b, n_heads, 1, head_dim)`; `k`, `v`: `(b, n_kv_heads, len, head_dim)`, any strides
/// with contiguous rows (views of the cache buffers). Returns `(b, 1, n_heads * head_dim)`.
pub fn decode_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    let (b, nh, s, hd) = q.dims4()?;
    let (kb, nkv, len, khd) = k.dims4()?;
    if s != 1 || kb != b || khd != hd || v.dims4()? != (b, nkv, len, hd) || nh % nkv != 0 {
        bail!(
            "decode attention: shapes q {:?}, k {:?}, v {:?} do not fit",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let q = q.contiguous()?;
    let (qs, ks, vs) = (
        q.storage_and_layout().0,
        k.storage_and_layout().0,
        v.storage_and_layout().0,
    );
    let (qv, kv, vv) = (view(&qs, &q, "q")?, view(&ks, k, "k")?, view(&vs, v, "v")?);
    let n_rep = nh / nkv;
    let mut out = vec![0f32; b * nh * hd];
    let head = |(i, y): (usize, &mut [f32])| {
        let (bi, h) = (i / nh, i % nh);
        let g = h / n_rep;
        let qh = qv.row(bi, h, 0, hd);
        let mut scores: Vec<f32> = (0..len)
            .map(|j| dot(qh, kv.row(bi, g, j, hd)) * scale)
            .collect();
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0f32;
        for x in scores.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        for (j, &p) in scores.iter().enumerate() {
            let p = p / sum;
            for (o, &vx) in y.iter_mut().zip(vv.row(bi, g, j, hd)) {
                *o += p * vx;
            }
        }
    };
    if b * nh * len * hd * 2 >= PARALLEL_MIN_WORK {
        out.par_chunks_mut(hd).enumerate().for_each(head);
    } else {
        out.chunks_mut(hd).enumerate().for_each(head);
    }
    Ok(Tensor::from_vec(out, (b, 1, nh * hd), &Device::Cpu)?)
}

/// A dot product the compiler vectorises: eight independent partial sums.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::test_values as values;

    /// Against the general path: matmul, softmax, matmul with the KV heads repeated; on strided
    /// views of a larger buffer, as the cache hands them out.
    #[test]
    fn matches_matmul_softmax_matmul() {
        let dev = Device::Cpu;
        let (b, nh, nkv, len, cap, hd) = (3, 6, 2, 37, 50, 40);
        let q = Tensor::from_vec(values(b * nh * hd, 1), (b, nh, 1, hd), &dev).unwrap();
        let kbuf =
            Tensor::from_vec(values(b * nkv * cap * hd, 2), (b, nkv, cap, hd), &dev).unwrap();
        let vbuf =
            Tensor::from_vec(values(b * nkv * cap * hd, 3), (b, nkv, cap, hd), &dev).unwrap();
        let (k, v) = (
            kbuf.narrow(2, 0, len).unwrap(),
            vbuf.narrow(2, 0, len).unwrap(),
        );
        let scale = 1.0 / (hd as f32).sqrt();
        let got = decode_attention(&q, &k, &v, scale).unwrap();
        let rep = |t: &Tensor| {
            t.unsqueeze(2)
                .unwrap()
                .repeat((1, 1, nh / nkv, 1, 1))
                .unwrap()
                .reshape((b, nh, len, hd))
                .unwrap()
        };
        let (kr, vr) = (rep(&k), rep(&v));
        let scores = (q.matmul(&kr.t().unwrap()).unwrap() * scale as f64).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let want = probs.matmul(&vr).unwrap().reshape((b, 1, nh * hd)).unwrap();
        let diff = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "max difference {diff}");
    }
}
