//! kadswarm's protocol core: everything a peer decides, with no IO.
//!
//! Time and randomness are passed in by the caller, so every decision here is
//! reproducible and the same code runs inside a real node and a simulator.

pub mod bitfield;
pub mod choker;
pub mod id;
pub mod manifest;
pub mod merkle;
pub mod picker;
pub mod rate;
pub mod transfer;
pub mod wire;

pub use bitfield::{Bitfield, ChunkIndex};
pub use id::ContentId;
pub use manifest::Manifest;
