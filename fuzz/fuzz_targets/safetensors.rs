//! A safetensors weights file in a model folder (config.json and tokenizer.json of the tiny
//! seed model): the header check, candle's mmap and tensor reads, the dtype and shape checks,
//! then one forward pass when it loads.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::load_with("model.safetensors", data));
