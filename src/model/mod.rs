//! The model: configuration, weights, the forward pass, the KV cache and loading.

mod activation;
pub mod attention;
pub mod config;
pub mod dense_matmul;
pub mod ggml_matmul;
pub mod hub;
pub mod kv_cache;
pub mod llama;
pub mod load;
pub mod weights;

pub use config::{LlamaConfig, RopeLayout};
pub use kv_cache::KvCache;
pub use llama::{Llama, Logits};
pub use load::{load, LoadedModel, ModelSource};

/// Deterministic values in [-1, 1) for kernel tests (a multiplicative hash of the index).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8;
            h as f32 / 8388608.0 - 1.0
        })
        .collect()
}
