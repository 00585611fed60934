//! dlm-tui: a terminal playground for diffusion language models.
//!
//! The crate is layered the way data flows (DESIGN.md, README "Layout"; `tests/layering.rs`
//! checks it), from the bottom up: [`sampler`] decides which masked positions to commit at each
//! denoising step (pure Rust, no I/O), [`text`] and [`chat`] turn text into token ids, [`kernels`]
//! are the CPU compute under the architectures of [`model`], which turn token ids into logits
//! with candle; [`hub`] fetches models; [`engine`] runs sampler lanes over a model on a
//! background thread and streams [`engine::Event`]s; [`run`] holds the run settings both front
//! ends share; [`cli`] and [`tui`] are the two front ends, and [`entry`] picks one.

// No unwrap outside tests: what a user, a file or a server controls gets an error with context,
// never a panic (DESIGN.md section 3). Tests unwrap freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod chat;
pub mod cli;
pub mod engine;
pub mod entry;
pub mod files;
pub mod hub;
pub mod kernels;
pub mod model;
pub mod prompt;
pub mod remote;
pub mod run;
pub mod sampler;
pub mod text;
pub mod train;
pub mod tui;
