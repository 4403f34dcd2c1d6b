//! The evidence a gateway vendor acts on, as plain values the HTML, Markdown and JSON reports
//! render: a ClientHello cut into named fields ([`hello_fields`]), a failing hello against a
//! passing one ([`hello_diff`], [`closest_passing`]), a hex dump with the differences marked
//! ([`hex_dump`]), a command that repeats a test ([`reproduce`]) and the known bug a failure
//! matches, with references ([`known_bug`]).
//!
//! Everything here is pure: no I/O, no clock, and no input (garbage bytes, hostile names)
//! makes it panic. The `report` module decides what to show; this one only says what the
//! bytes are.

mod diff;
mod fields;
mod hex;
mod known_bug;
mod names;
mod reproduce;
#[cfg(test)]
mod tests;

pub use diff::{closest_passing, hello_diff, DiffField, HelloDiff};
pub use fields::{hello_fields, Field, FieldKind};
pub use hex::{hex_dump, HexLine, BYTES_PER_LINE};
pub use known_bug::{
    known_bug, FailedHow, KnownBug, Reference, ECDHE_MLKEM, RFC7507, RFC7685, RFC8446_BACKWARD,
    RFC8446_INVARIANTS, RFC8701, TLDR_FAIL,
};
pub use reproduce::{reproduce, Reproduce};
