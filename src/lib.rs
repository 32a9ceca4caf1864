//! `gen`: generate text from local Llama-style models on candle, and see how decoding
//! strategies differ. The binary is a thin shell around [`app::run`]; the layout is in the
//! README.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod app;
pub mod chat;
pub mod cli;
pub mod config;
pub mod engine;
pub mod kernels;
pub mod model;
pub mod output;
pub mod quant;
pub mod sampling;
pub mod tokenizer;
pub mod weights;
