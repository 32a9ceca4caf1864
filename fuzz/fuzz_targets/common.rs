//! What the model-folder targets share: a scratch folder per process holding the tiny model of
//! `fuzz/seeds/hf_tiny`, into which each input is written as one of its files before gen loads
//! the folder the way `gen -m DIR` does.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const CONFIG: &[u8] = include_bytes!("../seeds/hf_tiny/config.json");
const WEIGHTS: &[u8] = include_bytes!("../seeds/hf_tiny/model.safetensors");
const TOKENIZER: &[u8] = include_bytes!("../seeds/hf_tiny/tokenizer.json");

/// The scratch folder, with every file of the tiny model in place.
fn folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gen-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

/// Writes the tiny model with `file` replaced by `data`, loads it and, when it loads, runs one
/// forward pass over a short prompt. Errors are fine; crashes, hangs and huge allocations are
/// what the fuzzer looks for.
pub fn load_with(file: &str, data: &[u8]) {
    let dir = folder();
    for (name, bytes) in [
        ("config.json", CONFIG),
        ("model.safetensors", WEIGHTS),
        ("tokenizer.json", TOKENIZER),
    ] {
        let bytes = if name == file { data } else { bytes };
        std::fs::write(dir.join(name), bytes).expect("writing the scratch model");
    }
    let Ok(loaded) = gen::app::load::load_path(dir, &candle_core::Device::Cpu) else {
        return;
    };
    let Ok(ids) = loaded.encode("hello") else {
        return;
    };
    let model = &loaded.model;
    let Ok(input) = candle_core::Tensor::new(ids.as_slice(), model.device()) else {
        return;
    };
    let Ok(input) = input.unsqueeze(0) else {
        return;
    };
    let mut cache = model.new_cache();
    let _ = model.forward(&input, &mut cache, gen::model::Logits::Last);
}
