//! Decoding strategies other than the sampled loop in [`crate::generate`]: beam search.

pub mod beam;

pub use beam::{
    beam_search, beam_search_from, BeamParams, BeamResult, EarlyStopping, Hypothesis, Processors,
};
