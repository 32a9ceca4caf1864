//! A GGUF file's header and metadata as gen reads them: `read_gguf_header` (the alignment scan,
//! then candle's parser), then the model settings and the tokenizer built from the metadata.
//! Any input must give a value or an error, never a crash, a hang or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut cursor = std::io::Cursor::new(data);
    let Ok(content) = gen::weights::read_gguf_header(&mut cursor) else {
        return;
    };
    let _ = gen::model::LlamaConfig::from_gguf(&content);
    let _ = gen::tokenizer::Tokenizer::from_gguf(&content);
});
