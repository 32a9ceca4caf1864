//! The key/value cache, owned by the caller rather than hidden inside the model, so that
//! generation strategies can append, truncate, fork and reorder it.
//!
//! Each layer keeps one preallocated buffer per K and V of shape
//! `(batch, n_kv_heads, capacity, head_dim)`; appends write in place at the current length and
//! the capacity doubles when full. Because writes are in place, no two caches ever share a
//! buffer: [`KvCache::fork`] and [`KvCache::reorder`] make fresh copies.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

/// Positions allocated at once when a buffer is created or grows.
const CAPACITY_STEP: usize = 256;

#[derive(Debug)]
struct LayerBuffers {
    k: Tensor, // (batch, n_kv_heads, capacity, head_dim)
    v: Tensor, // (batch, n_kv_heads, capacity, head_dim)
    len: usize,
}

/// Cached keys and values for every layer of one batch of sequences that share a position.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<LayerBuffers>>,
    max_len: usize,
    dtype: DType,
}

impl KvCache {
    /// An empty f32 cache for `num_layers` layers that can hold at most `max_len` positions.
    pub fn new(num_layers: usize, max_len: usize) -> Self {
        Self::with_dtype(num_layers, max_len, DType::F32)
    }

    /// An empty cache that stores keys and values as `dtype` (f32, or f16 as llama.cpp does by
    /// default: half the memory and half the reading per token). Appends convert to it,
    /// rounding to nearest.
    pub fn with_dtype(num_layers: usize, max_len: usize, dtype: DType) -> Self {
        Self {
            layers: (0..num_layers).map(|_| None).collect(),
            max_len,
            dtype,
        }
    }

    /// What the keys and values are stored as.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of cached positions (the position of the next token).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |l| l.len)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most positions this cache may hold (the model's context length).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Number of sequences in the batch, or `None` before the first append.
    pub fn batch_size(&self) -> Option<usize> {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .and_then(|l| l.k.dim(0).ok())
    }

    /// Appends `k` and `v` of shape `(batch, n_kv_heads, seq, head_dim)` to layer `layer` and
    /// returns views of everything cached for that layer, `(batch, n_kv_heads, len, head_dim)`.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (max_len, dtype) = (self.max_len, self.dtype);
        let slot = self
            .layers
            .get_mut(layer)
            .with_context(|| format!("KV cache has no layer {layer}"))?;
        let (b, h, s, d) = k.dims4()?;
        let new_len = slot.as_ref().map_or(0, |l| l.len) + s;
        if new_len > max_len {
            bail!("context is full: {new_len} positions requested, the model's context holds {max_len}");
        }
        let buffers = match slot.take() {
            None => {
                let cap = round_capacity(new_len, max_len);
                LayerBuffers {
                    k: Tensor::zeros((b, h, cap, d), dtype, k.device())?,
                    v: Tensor::zeros((b, h, cap, d), dtype, k.device())?,
                    len: 0,
                }
            }
            Some(l) => {
                let (lb, lh, cap, ld) = l.k.dims4()?;
                if (lb, lh, ld) != (b, h, d) {
                    bail!("KV cache append: cached shape ({lb}, {lh}, _, {ld}) does not match new ({b}, {h}, _, {d})");
                }
                if new_len > cap {
                    copy_with_capacity(&l, round_capacity(new_len.max(cap * 2), max_len))?
                } else {
                    l
                }
            }
        };
        let buffers = slot.insert(buffers);
        buffers
            .k
            .slice_set(&k.to_dtype(dtype)?.contiguous()?, 2, buffers.len)?;
        buffers
            .v
            .slice_set(&v.to_dtype(dtype)?.contiguous()?, 2, buffers.len)?;
        buffers.len = new_len;
        Ok((
            buffers.k.narrow(2, 0, new_len)?,
            buffers.v.narrow(2, 0, new_len)?,
        ))
    }

    /// Forgets every position from `len` on; later appends overwrite them.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        let current = self.len();
        if len > current {
            bail!("cannot truncate the KV cache to {len} positions: it holds only {current}");
        }
        for l in self.layers.iter_mut().flatten() {
            l.len = len;
        }
        Ok(())
    }

    /// An independent copy: no storage is shared, so writes to either never reach the other.
    pub fn fork(&self) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|slot| {
                slot.as_ref()
                    .map(|l| copy_with_capacity(l, l.k.dim(2)?))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            max_len: self.max_len,
            dtype: self.dtype,
        })
    }

    /// Rebuilds the batch so that new row `i` is old row `parents[i]` (beam search keeps the
    /// survivors' histories; `[0, 0, 0]` expands one prompt into three sequences).
    pub fn reorder(&mut self, parents: &[usize]) -> Result<()> {
        let Some(batch) = self.batch_size() else {
            bail!("cannot reorder an empty KV cache");
        };
        if parents.is_empty() {
            bail!("cannot reorder the KV cache into an empty batch");
        }
        if let Some(p) = parents.iter().find(|&&p| p >= batch) {
            bail!("KV cache reorder: parent {p} is outside the batch of {batch}");
        }
        if parents.len() == batch && parents.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(());
        }
        let device = self.device()?;
        let same_batch = parents.len() == batch;
        if same_batch && device.is_cpu() {
            // Beam search's case: rows whose parent is themselves stay put, and only the
            // cached positions of the others are copied, once.
            for l in self.layers.iter_mut().flatten() {
                let op = ReorderRows {
                    parents,
                    len: l.len,
                };
                l.k.inplace_op1(&op)?;
                l.v.inplace_op1(&op)?;
            }
            return Ok(());
        }
        for l in self.layers.iter_mut().flatten() {
            // Only the cached positions move, not the whole capacity. The gathered rows are a
            // fresh tensor, so rows that share a parent share no storage; with an unchanged
            // batch size they are copied back in place, otherwise into new buffers.
            let (_, h, cap, d) = l.k.dims4()?;
            let gather = |t: &Tensor| -> Result<Tensor> {
                let rows = parents
                    .iter()
                    .map(|&p| t.narrow(0, p, 1)?.narrow(2, 0, l.len))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                // (parents, h, len, d) in fresh storage; `cat` of a single row returns the
                // strided view itself, hence `contiguous`.
                Ok(Tensor::cat(&rows, 0)?.contiguous()?)
            };
            let (k, v) = (gather(&l.k)?, gather(&l.v)?);
            if !same_batch {
                l.k = Tensor::zeros((parents.len(), h, cap, d), self.dtype, &device)?;
                l.v = Tensor::zeros((parents.len(), h, cap, d), self.dtype, &device)?;
            }
            l.k.slice_set(&k, 2, 0)?;
            l.v.slice_set(&v, 2, 0)?;
        }
        Ok(())
    }

    fn device(&self) -> Result<Device> {
        self.layers
            .iter()
            .flatten()
            .next()
            .map(|l| l.k.device().clone())
            .context("the KV cache is empty")
    }
}

/// In-place batch reorder of one `(batch, heads, capacity, head_dim)` f32 or f16 buffer on the CPU:
/// row `i` becomes old row `parents[i]` over the first `len` positions. Old rows that are
/// read after being overwritten are saved first.
struct ReorderRows<'a> {
    parents: &'a [usize],
    len: usize,
}

impl candle_core::InplaceOp1 for ReorderRows<'_> {
    fn name(&self) -> &'static str {
        "kv-reorder-rows"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        match storage {
            candle_core::CpuStorage::F32(data) => self.apply(data, layout),
            candle_core::CpuStorage::F16(data) => self.apply(data, layout),
            _ => candle_core::bail!("KV cache reorder: the cache must be f32 or f16"),
        }
    }
}

impl ReorderRows<'_> {
    fn apply<T: Copy>(
        &self,
        data: &mut [T],
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let (b, h, cap, d) = layout.shape().dims4()?;
        if !layout.is_contiguous() || self.parents.len() != b || self.len > cap {
            candle_core::bail!("KV cache reorder: unexpected buffer layout");
        }
        let base = layout.start_offset();
        let row = h * cap * d;
        let span = self.len * d; // cached part of one (row, head)
        let moves: Vec<(usize, usize)> = self
            .parents
            .iter()
            .enumerate()
            .filter(|&(i, &p)| i != p)
            .map(|(i, &p)| (i, p))
            .collect();
        // Sources that are themselves overwritten: keep their cached part first.
        let mut overwritten: Vec<usize> = moves
            .iter()
            .map(|&(_, p)| p)
            .filter(|&p| self.parents[p] != p)
            .collect();
        overwritten.sort_unstable();
        overwritten.dedup();
        let saved: Vec<(usize, Vec<T>)> = overwritten
            .into_iter()
            .map(|p| {
                let mut copy = Vec::with_capacity(h * span);
                for head in 0..h {
                    let at = base + p * row + head * cap * d;
                    copy.extend_from_slice(&data[at..at + span]);
                }
                (p, copy)
            })
            .collect();
        for (i, p) in moves {
            for head in 0..h {
                let dst = base + i * row + head * cap * d;
                match saved.iter().find(|(s, _)| *s == p) {
                    Some((_, copy)) => {
                        data[dst..dst + span].copy_from_slice(&copy[head * span..(head + 1) * span])
                    }
                    None => {
                        let src = base + p * row + head * cap * d;
                        data.copy_within(src..src + span, dst);
                    }
                }
            }
        }
        Ok(())
    }
}

fn round_capacity(needed: usize, max_len: usize) -> usize {
    needed
        .div_ceil(CAPACITY_STEP)
        .saturating_mul(CAPACITY_STEP)
        .min(max_len)
        .max(needed)
}

/// Fresh buffers of `cap` positions holding a copy of what `l` caches.
fn copy_with_capacity(l: &LayerBuffers, cap: usize) -> Result<LayerBuffers> {
    let (b, h, _, d) = l.k.dims4()?;
    let copy = |t: &Tensor| -> Result<Tensor> {
        let fresh = Tensor::zeros((b, h, cap, d), t.dtype(), t.device())?;
        fresh.slice_set(&t.narrow(2, 0, l.len)?.contiguous()?, 2, 0)?;
        Ok(fresh)
    };
    Ok(LayerBuffers {
        k: copy(&l.k)?,
        v: copy(&l.v)?,
        len: l.len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(b: usize, s: usize, start: f32) -> Tensor {
        let n = b * 2 * s * 4;
        let data: Vec<f32> = (0..n).map(|i| start + i as f32).collect();
        Tensor::from_vec(data, (b, 2, s, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn append_grows_past_capacity_and_keeps_contents() {
        let mut c = KvCache::new(1, 4096);
        let first = kv(1, 300, 0.0);
        c.append(0, &first, &first).unwrap();
        let second = kv(1, 10, 1e6);
        let (k, _) = c.append(0, &second, &second).unwrap();
        assert_eq!(c.len(), 310);
        let expect = Tensor::cat(&[&first, &second], 2).unwrap();
        let diff = (k - expect)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn fork_shares_no_storage() {
        let mut a = KvCache::new(1, 64);
        a.append(0, &kv(1, 3, 0.0), &kv(1, 3, 0.0)).unwrap();
        let mut b = a.fork().unwrap();
        a.truncate(2).unwrap();
        a.append(0, &kv(1, 1, 500.0), &kv(1, 1, 500.0)).unwrap();
        b.truncate(2).unwrap();
        let (kb, _) = b.append(0, &kv(1, 1, 900.0), &kv(1, 1, 900.0)).unwrap();
        let (ka, _) = a.append(0, &kv(1, 1, 0.0), &kv(1, 1, 0.0)).unwrap();
        let a_row: Vec<f32> = ka
            .narrow(2, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b_row: Vec<f32> = kb
            .narrow(2, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a_row[0], 500.0);
        assert_eq!(b_row[0], 900.0);
    }

    /// Same-batch reorders are done in place; swaps, chains and shared parents must read every
    /// source before it is overwritten, and only the cached positions move.
    /// Reorders within the batch (in place) and into smaller or larger batches (a sequence
    /// leaving `--compare`'s batch down to the last one) keep each row's history.
    #[test]
    fn reorder_keeps_each_parents_rows() {
        for parents in [
            vec![2],
            vec![1, 3],
            vec![0, 0, 1, 1, 2],
            vec![1, 0, 2, 3],
            vec![1, 2, 3, 0],
            vec![0, 0, 1, 1],
            vec![3, 3, 3, 3],
            vec![2, 0, 0, 1],
            vec![0, 1, 2, 3],
        ] {
            let mut c = KvCache::new(1, 64);
            let k = kv(4, 5, 0.0);
            let v = kv(4, 5, 1000.0);
            c.append(0, &k, &v).unwrap();
            c.reorder(&parents).unwrap();
            let (k2, v2) = c
                .append(
                    0,
                    &kv(parents.len(), 1, -50.0),
                    &kv(parents.len(), 1, -50.0),
                )
                .unwrap();
            for (i, &p) in parents.iter().enumerate() {
                for (got, old) in [(&k2, &k), (&v2, &v)] {
                    let got: Vec<f32> = got
                        .narrow(0, i, 1)
                        .unwrap()
                        .narrow(2, 0, 5)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    let want: Vec<f32> = old
                        .narrow(0, p, 1)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    assert_eq!(got, want, "parents {parents:?}, row {i}");
                }
            }
        }
    }

    #[test]
    fn reorder_and_truncate_errors() {
        let mut c = KvCache::new(2, 16);
        assert!(c.reorder(&[0]).is_err());
        c.append(0, &kv(2, 2, 0.0), &kv(2, 2, 0.0)).unwrap();
        c.append(1, &kv(2, 2, 0.0), &kv(2, 2, 0.0)).unwrap();
        assert!(c.reorder(&[2]).is_err());
        assert!(c.truncate(3).is_err());
        c.reorder(&[1, 1, 0]).unwrap();
        assert_eq!(c.batch_size(), Some(3));
        assert!(
            c.append(0, &kv(3, 20, 0.0), &kv(3, 20, 0.0)).is_err(),
            "past max_len"
        );
    }
}
