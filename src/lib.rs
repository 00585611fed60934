//! dlm-tui: a terminal playground for diffusion language models.
//!
//! The crate is split the way data flows (see DESIGN.md): [`model`] turns token ids into logits with
//! candle, [`sampler`] decides which masked positions to commit at each denoising step (pure Rust, no
//! I/O), [`engine`] runs sampler lanes over a model on a background thread and streams
//! [`engine::Event`]s, and [`cli`] is the command-line front end.

pub mod chat;
pub mod cli;
pub mod engine;
pub mod entry;
pub mod files;
pub mod hub;
pub mod kernels;
pub mod model;
pub mod prompt;
pub mod run;
pub mod sampler;
pub mod text;
pub mod train;
pub mod tui;
