//! The parser of a server's first answer now lives in [`crate::wire`]; these re-exports keep
//! the old paths working.

pub use crate::wire::{parse_server_answer, ServerAnswer, HRR_RANDOM};
