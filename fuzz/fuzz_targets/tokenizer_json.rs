//! A tokenizer.json as gen loads it (`Tokenizer::from_json_file`: the tokenizers crate's parser,
//! then gen's BOS/EOS probing), then encoding, streaming decode and the longest-token scan on a
//! few texts. Any input must load or fail, never crash or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gen-fuzz-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir.join("tokenizer.json")
    })
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(path(), data).expect("writing the scratch tokenizer");
    let Ok(tok) = gen::tokenizer::Tokenizer::from_json_file(path()) else {
        return;
    };
    let _ = tok.longest_token_bytes();
    for text in ["hello world", "  12345 <|im_end|>\n", "é😀\u{0}"] {
        let Ok(ids) = tok.encode(text) else {
            continue;
        };
        let _ = tok.decode(&ids);
        let mut stream = tok.stream();
        for &id in &ids {
            if stream.next(id).is_err() {
                break;
            }
        }
        let _ = stream.finish();
    }
});
