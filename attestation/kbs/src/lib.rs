//! Cocoon's key broker.
#![forbid(unsafe_code)]
