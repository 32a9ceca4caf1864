//! The one integration-test binary; each area is a submodule.

mod beam;
mod cli;
mod model;
mod real;
mod sampling;
mod stop;
mod tiny;
