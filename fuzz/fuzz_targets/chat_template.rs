//! A chat template from a model file, compiled and rendered with a short conversation: any
//! source must compile or fail, and render or fail within the render's fuel.
#![no_main]

use gen::chat::{ChatTemplate, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = ChatTemplate::new(source, Some("<s>".into()), Some("</s>".into())) else {
        return;
    };
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "Hello"),
        Message::new("assistant", "Hi."),
        Message::new("user", "Bye"),
    ];
    let _ = t.render(&messages, true);
});
