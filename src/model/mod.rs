//! The model: configuration, weights, the forward pass, the KV cache and loading.

mod attention;
pub mod config;
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
