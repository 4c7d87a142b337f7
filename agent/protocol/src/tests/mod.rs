//! Crate-internal tests that need the generated wire types.

mod json_tests;
mod samples;
mod wire_tests;
