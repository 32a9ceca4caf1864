//! The one integration-test binary; each area is a submodule.

mod bad_input;
mod beam;
mod chat;
mod chat_corpus;
mod chat_session;
mod cli;
mod compare;
mod crosscheck;
mod families;
mod hf_to_gguf;
mod input;
mod model;
mod print_prompt;
mod quant_types;
mod quantize;
mod readme;
mod real;
mod samples;
mod sampling;
mod snapshots;
mod speculative;
mod stop;
mod tiny;
mod usage;
