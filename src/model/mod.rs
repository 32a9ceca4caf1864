//! The model definition: settings (file mirror → resolved [`LlamaConfig`]), the forward pass
//! with a `load` per layer ([`Llama`]), linear layers over the stored weights, and the KV cache
//! the caller owns. Model code never samples, prints or reads flags.

pub mod config;
pub mod family;
pub mod kv_cache;
pub mod linear;
pub mod llama;

pub use config::{LlamaConfig, RopeLayout, SlidingLayers, SlidingWindow};
pub use family::{Activation, Family};
pub use kv_cache::KvCache;
pub use linear::{Linear, Projections};
pub use llama::{Llama, Logits};
