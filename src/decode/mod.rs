//! Decoding strategies other than the sampled loop in [`crate::generate`]: beam search.

pub mod beam;

pub use beam::{beam_search, BeamParams, BeamResult, EarlyStopping, Hypothesis, Processors};
