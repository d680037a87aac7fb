//! synack: a sans-IO TCP/IPv4 stack built for connection rate.
//!
//! The crate is split the way smoltcp and quinn-proto are:
//! - [`wire`]: zero-copy views over frames and plain `Repr` structs with parse/emit. Wire code knows nothing of
//!   connections.
//! - [`io`]: the one trait through which the sans-IO core hands frames to whatever transmits them.
//! - [`time`]: the caller's clock, passed in as `now`.
//! - [`timer`], [`buffer`], [`assembler`], [`isn`]: the engine's building blocks, each allocation-free once built.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod assembler;
pub mod buffer;
pub mod engine;
pub mod io;
pub mod isn;
pub mod mem;
pub mod sim;
pub mod time;
pub mod timer;
pub mod wire;
