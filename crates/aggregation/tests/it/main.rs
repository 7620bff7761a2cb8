//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod arbitrary_bytes;
mod bad_input;
mod golden;
mod python_interop;
mod roundtrip;
