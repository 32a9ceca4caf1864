//! Chat templates: turns a conversation into the prompt text a chat model was trained on, by
//! rendering the model's Jinja template (GGUF `tokenizer.chat_template`, `chat_template` in
//! tokenizer_config.json, or `--chat-template-file`) with minijinja the way Hugging Face
//! `apply_chat_template` renders it with jinja2; and finds the marker the template ends a turn
//! with, so generation can stop there.
//!
//! Rendering follows transformers (`utils/chat_template_utils.py`, `_compile_jinja_template` and
//! `render_jinja_template`): `trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline` off,
//! no auto-escaping, `{% break %}`/`{% continue %}` allowed, the globals `raise_exception(msg)`,
//! `strftime_now(fmt)` ([`Clock`]) and `namespace`, transformers' `tojson` filter (Python's
//! `json.dumps`, [`pyjson`]), and the variables `messages`, `tools` and `documents` (None: gen
//! passes no tools), `add_generation_prompt`, `bos_token` and `eos_token` (a token the model
//! does not have is left undefined, as transformers passes only the tokens it has). Python
//! string and dict methods that templates call (`.strip()`, `.startswith()`, `.items()` …) come
//! from minijinja-contrib's `pycompat`. How close this is to transformers is measured on 70 real
//! templates (tests/it/chat_corpus.rs; docs/TESTING.md lists the ones that differ and why).

mod clock;
mod pyjson;

pub use clock::Clock;

use anyhow::{anyhow, Result};
use minijinja::value::Serde;
use minijinja::{context, AutoEscape, Environment, Error, ErrorKind, Value};
use serde::Serialize;

/// The name the template is stored under (shown in error locations, e.g. `chat_template:3`).
const NAME: &str = "chat_template";

/// End-of-turn markers of well-known chat formats, recognised by [`ChatTemplate::end_of_turn_token`]:
/// ChatML (Qwen, SmolLM), Llama 3, Phi-3, Gemma, Command-R, GPT-2-style, Llama 3 base, and
/// SentencePiece's `</s>` (Llama 2, Mistral, Zephyr).
const KNOWN_END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|END_OF_TURN_TOKEN|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
];

/// Probe contents for the end-of-turn detection: plain ASCII without surrounding whitespace,
/// so templates that trim or strip content leave them intact.
const USER_PROBE: &str = "gen-probe-user-message";
const ASSISTANT_PROBE: &str = "gen-probe-assistant-message";

/// One message of a conversation, as the template sees it (`message['role']`,
/// `message['content']`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, or whatever other role the template knows.
    pub role: String,
    /// The message text, passed to the template unchanged.
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template with the BOS/EOS token texts it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: Option<String>,
    eos: Option<String>,
    end_of_turn: Option<String>,
}

/// The error `raise_exception(msg)` raises, kept as the source of minijinja's error so that
/// [`ChatTemplate::render`] can report the template's own message.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// The message of a `raise_exception` somewhere in `err`'s source chain.
fn raised_message(err: &Error) -> Option<&str> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<Raised>() {
            return Some(&r.0);
        }
        source = e.source();
    }
    None
}

/// Instructions one render of a chat template may run. Rendering a conversation with a real
/// template takes thousands; this leaves room for very long conversations and stops a
/// runaway loop within about a second.
const RENDER_FUEL: u64 = 20_000_000;

/// The most text one render may produce (64 MiB, the prompt cap): fuel bounds instructions,
/// but one instruction can emit a long string.
const RENDER_MAX_BYTES: usize = 64 << 20;

/// A render's output, refusing to grow past [`RENDER_MAX_BYTES`] (the write that would pass
/// it fails, which ends the render).
#[derive(Default)]
struct Capped {
    text: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + b.len() > RENDER_MAX_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("the rendered text is too long"));
        }
        self.text.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChatTemplate {
    /// Compiles `source` (a Jinja chat template) with the model's BOS and EOS token texts,
    /// which the template sees as `bos_token` and `eos_token` (undefined when `None`). A
    /// template that does not compile is an error naming the problem and its line.
    pub fn new(source: &str, bos: Option<String>, eos: Option<String>) -> Result<Self> {
        Self::with_clock(source, bos, eos, Clock::Local)
    }

    /// As [`ChatTemplate::new`], with `strftime_now` reading `clock` (tests pin the date).
    pub fn with_clock(
        source: &str,
        bos: Option<String>,
        eos: Option<String>,
        clock: Clock,
    ) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|e| anyhow!("configuring the chat template syntax: {e}"))?;
        env.set_syntax(syntax);
        // A template is code from the model file: a bound on the instructions one render may
        // run ends a hostile loop (`range(100000)` nested) with an error instead of never.
        env.set_fuel(Some(RENDER_FUEL));
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", move |format: String| {
            clock
                .strftime(&format)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e))
        });
        env.add_filter("tojson", pyjson::tojson);
        env.add_test("iterable", is_iterable);
        env.add_template_owned(NAME, without_generation_tags(source))
            .map_err(|e| anyhow!("the chat template does not compile: {e}"))?;
        let mut template = Self {
            env,
            bos,
            eos,
            end_of_turn: None,
        };
        template.end_of_turn = template.detect_end_of_turn();
        Ok(template)
    }

    /// Renders `messages` as `tokenizer.apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` does. With `add_generation_prompt` the text ends with the
    /// header of an assistant turn (for templates that have one), ready for the model to
    /// continue. A template that calls `raise_exception` (for instance on roles that do not
    /// alternate) makes this an error carrying the template's message.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let token = |t: &Option<String>| t.as_deref().map_or(Value::UNDEFINED, Value::from);
        let ctx = context! {
            messages => Value::from(Serde(messages)),
            tools => Value::from(()),
            documents => Value::from(()),
            add_generation_prompt => add_generation_prompt,
            bos_token => token(&self.bos),
            eos_token => token(&self.eos),
        };
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| anyhow!("loading the compiled chat template: {e}"))?;
        let mut out = Capped::default();
        let result = template.render_captured_to(ctx, &mut out);
        if out.overflowed {
            anyhow::bail!(
                "the chat template rendered more than {RENDER_MAX_BYTES} bytes for this conversation; it cannot be used (try --raw)"
            );
        }
        result.map_err(|e| match raised_message(&e) {
            Some(m) => anyhow!("the chat template rejected the conversation: {m}"),
            None => anyhow!("rendering the chat template: {e}"),
        })?;
        String::from_utf8(out.text)
            .map_err(|e| anyhow!("the chat template rendered invalid UTF-8: {e}"))
    }

    /// The marker the template writes at the end of a turn (`<|im_end|>` for ChatML,
    /// `<|eot_id|>` for Llama 3, `</s>` for Mistral …), if one was recognised; a model
    /// generating an assistant turn emits it when done.
    ///
    /// Best effort, decided once when the template is built: render a user message followed
    /// by an assistant message (without the generation prompt) and look at the text right
    /// after the assistant's content, leading whitespace skipped. If it starts with the EOS
    /// token or one of the known markers (`<|im_end|>`, `<|eot_id|>`, `<|end|>`,
    /// `<end_of_turn>`, `<|END_OF_TURN_TOKEN|>`, `<|endoftext|>`, `<|end_of_text|>`, `</s>`),
    /// the longest such match is the marker; otherwise a `<|…|>`-shaped token there (no
    /// whitespace, at most 64 bytes) is taken. If the template rejects that conversation, a
    /// single user message is rendered instead and the text after the user's content is
    /// examined the same way. `None` when nothing recognisable follows (for example a
    /// template that ends turns with a plain newline).
    pub fn end_of_turn_token(&self) -> Option<&str> {
        self.end_of_turn.as_deref()
    }

    fn detect_end_of_turn(&self) -> Option<String> {
        let pair = [
            Message::new("user", USER_PROBE),
            Message::new("assistant", ASSISTANT_PROBE),
        ];
        let (text, probe) = match self.render(&pair, false) {
            Ok(text) => (text, ASSISTANT_PROBE),
            Err(_) => (
                self.render(&[Message::new("user", USER_PROBE)], false)
                    .ok()?,
                USER_PROBE,
            ),
        };
        let at = text.rfind(probe)? + probe.len();
        let rest = text[at..].trim_start();
        self.eos
            .as_deref()
            .into_iter()
            .chain(KNOWN_END_OF_TURN.iter().copied())
            .filter(|m| !m.is_empty() && rest.starts_with(m))
            .max_by_key(|m| m.len())
            .or_else(|| special_token_shape(rest))
            .map(str::to_string)
    }
}

/// jinja2's `is iterable`: a list, map, string or undefined (which iterates as empty), but not
/// None, which minijinja would iterate as empty too and templates test first
/// (`tools is iterable and tools | length > 0`).
fn is_iterable(value: &Value) -> bool {
    !value.is_none() && value.try_iter().is_ok()
}

/// `source` with transformers' `{% generation %}` … `{% endgeneration %}` tags (its
/// AssistantTracker extension, which marks the assistant's text for training masks and
/// otherwise renders the body as it is) turned into `{% if true %}` … `{% endif %}`: a block
/// with the same body and the same whitespace control, on the same lines.
fn without_generation_tags(source: &str) -> String {
    static TAG: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\{%([-+]?)(\s*)(end)?generation(\s*)([-+]?)%\}").ok()
    });
    match TAG.as_ref() {
        Some(tag) if source.contains("generation") => tag
            .replace_all(source, |c: &regex::Captures| {
                let word = if c.get(3).is_some() {
                    "endif"
                } else {
                    "if true"
                };
                format!("{{%{}{}{word}{}{}%}}", &c[1], &c[2], &c[4], &c[5])
            })
            .into_owned(),
        _ => source.to_string(),
    }
}

/// A `<|…|>` token at the start of `text` (no whitespace inside, at most 64 bytes).
fn special_token_shape(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("<|")?;
    let end = inner.find("|>")? + 4;
    let token = &text[..end];
    (end <= 64 && !token.chars().any(char::is_whitespace)).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    fn tokens(bos: &str, eos: &str) -> (Option<String>, Option<String>) {
        (Some(bos.to_string()), Some(eos.to_string()))
    }

    #[test]
    fn chatml_renders_and_ends_turns_with_im_end() {
        let t = ChatTemplate::new(CHATML, None, Some("<|im_end|>".into())).unwrap();
        let msgs = [
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
        ];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&msgs[1..], false).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n"
        );
        assert_eq!(t.end_of_turn_token(), Some("<|im_end|>"));
    }

    #[test]
    fn llama3_trims_content_and_prepends_bos() {
        let (bos, eos) = tokens("<|begin_of_text|>", "<|end_of_text|>");
        let t = ChatTemplate::new(LLAMA3, bos, eos).unwrap();
        let msgs = [
            Message::new("user", "  Hi\n"),
            Message::new("assistant", "Hello"),
            Message::new("user", "Bye"),
        ];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        // The EOS here is <|end_of_text|>, but turns end with <|eot_id|>.
        assert_eq!(t.end_of_turn_token(), Some("<|eot_id|>"));
    }

    #[test]
    fn raise_exception_fails_with_the_templates_message() {
        let src = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        let err = t
            .render(
                &[Message::new("system", "x"), Message::new("user", "y")],
                false,
            )
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "the chat template rejected the conversation: System role not supported"
        );
        assert_eq!(t.end_of_turn_token(), Some("<end_of_turn>"));
    }

    #[test]
    fn other_render_errors_say_where() {
        let t = ChatTemplate::new("{{ messages[0].content.nosuchmethod() }}", None, None).unwrap();
        let err = format!(
            "{:#}",
            t.render(&[Message::new("user", "x")], false).unwrap_err()
        );
        assert!(err.starts_with("rendering the chat template: "), "{err}");
        assert!(err.contains("chat_template:1"), "{err}");
    }

    #[test]
    fn a_template_that_does_not_compile_is_an_error() {
        let err = ChatTemplate::new("{% for m in messages %}{{ m.content }}", None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("the chat template does not compile: syntax error"),
            "{err}"
        );
        assert!(err.contains("chat_template:1"), "{err}");
    }

    #[test]
    fn trim_and_lstrip_blocks_and_no_trailing_newline() {
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n";
        let t = ChatTemplate::new(src, None, None).unwrap();
        let msgs = [Message::new("user", "a"), Message::new("user", "b")];
        assert_eq!(t.render(&msgs, false).unwrap(), "[a]\n[b]\n");
        // keep_trailing_newline off: one final newline of the source is dropped.
        let t = ChatTemplate::new("{{ messages[0].content }}\n", None, None).unwrap();
        assert_eq!(t.render(&msgs, false).unwrap(), "a");
    }

    #[test]
    fn missing_tokens_are_undefined_and_content_is_not_escaped() {
        let src =
            "{{ bos_token }}{% if eos_token is defined %}EOS{% endif %}{{ messages[0].content }}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        assert_eq!(
            t.render(&[Message::new("user", "<b>&amp;</b> 'q'")], false)
                .unwrap(),
            "<b>&amp;</b> 'q'"
        );
    }

    #[test]
    fn python_string_methods_and_loop_controls_work() {
        let src = "{% for m in messages %}{% if m.content.startswith('skip') %}{% continue %}{% endif %}{{ m.content.strip().upper() }};{% endfor %}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        let msgs = [
            Message::new("user", " a "),
            Message::new("user", "skip me"),
            Message::new("user", "b\n"),
        ];
        assert_eq!(t.render(&msgs, false).unwrap(), "A;B;");
    }

    #[test]
    fn end_of_turn_detection() {
        // Mistral: user turns end in [/INST]; the assistant's turn ends with EOS.
        let mistral = "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]{% else %}{{ m.content + eos_token }}{% endif %}{% endfor %}";
        let (bos, eos) = tokens("<s>", "</s>");
        let t = ChatTemplate::new(mistral, bos, eos).unwrap();
        assert_eq!(t.end_of_turn_token(), Some("</s>"));
        // An unknown <|…|> marker after the content is taken as it is.
        let custom = "{% for m in messages %}{{ m.content }}\n<|turn_done|>{% endfor %}";
        let t = ChatTemplate::new(custom, None, None).unwrap();
        assert_eq!(t.end_of_turn_token(), Some("<|turn_done|>"));
        // A template that rejects assistant messages: the user turn is examined.
        let user_only = "{% for m in messages %}{% if m.role != 'user' %}{{ raise_exception('no') }}{% endif %}{{ m.content }}<|end|>{% endfor %}";
        let t = ChatTemplate::new(user_only, None, None).unwrap();
        assert_eq!(t.end_of_turn_token(), Some("<|end|>"));
        // Turns separated by plain text: nothing recognisable.
        let plain = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n\n{% endfor %}";
        let t = ChatTemplate::new(plain, None, None).unwrap();
        assert_eq!(t.end_of_turn_token(), None);
    }

    #[test]
    fn generation_tags_render_their_body() {
        assert_eq!(
            without_generation_tags("a{%- generation -%} b {%endgeneration%}{% if x %}"),
            "a{%- if true -%} b {%endif%}{% if x %}"
        );
        let src = "{% for m in messages %}{% generation %}\n[{{ m.content }}]{%- endgeneration %}\n{% endfor %}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        let msgs = [Message::new("user", "a"), Message::new("assistant", "b")];
        assert_eq!(t.render(&msgs, false).unwrap(), "[a][b]");
    }

    #[test]
    fn tools_and_documents_are_none_and_none_is_not_iterable() {
        let src = "{{ tools is defined }} {{ tools is none }} {{ documents is none }} {{ tools is iterable }} {{ messages is iterable }} {{ nothing is iterable }}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        assert_eq!(
            t.render(&[Message::new("user", "x")], false).unwrap(),
            "True True True False True True"
        );
    }

    #[test]
    fn strftime_now_reads_the_clock() {
        let t = ChatTemplate::with_clock(
            "{{ strftime_now('%d %B %Y') }}",
            None,
            None,
            Clock::Fixed(0),
        )
        .unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "01 January 1970");
    }

    #[test]
    fn special_token_shape_bounds() {
        assert_eq!(special_token_shape("<|a|>x"), Some("<|a|>"));
        assert_eq!(special_token_shape("<|a b|>"), None);
        assert_eq!(special_token_shape("<|a"), None);
        assert_eq!(
            special_token_shape(&format!("<|{}|>", "x".repeat(61))),
            None
        );
        assert_eq!(
            special_token_shape(&format!("<|{}|>", "x".repeat(60))).map(str::len),
            Some(64)
        );
    }
}
