//! The numerical core of critbatch: minibatch optimizers on synthetic problems, counted in steps
//! to a target, swept over batch size, learning rate, seed and problem in parallel.
//!
//! Layers depend one way: the numerics ([`real`], [`problems`], [`optimizers`], [`schedules`], [`targets`],
//! [`jumps`],
//! [`rng`], [`run`], [`simd`], [`sweep`]) know nothing of Python; `py` (behind the `python` feature) is the
//! only module that touches `PyO3`, so `cargo test` runs without an interpreter.
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod errors;
pub mod jumps;
pub mod linalg;
pub mod optimizers;
pub mod problems;
pub mod real;
pub mod rng;
pub mod run;
pub mod schedules;
pub mod simd;
pub mod sweep;
pub mod targets;

#[cfg(feature = "python")]
mod py;
