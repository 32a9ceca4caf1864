//! A config.json beside the tiny seed model's weights and tokenizer: parsing, resolution and
//! `validate`, the weight loads it drives, then one forward pass when it loads.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::load_with("config.json", data));
