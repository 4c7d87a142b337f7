//! KBS protocol client.
#![forbid(unsafe_code)]
