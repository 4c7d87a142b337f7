//! Domain types: plain Rust mirrors of every request and response of `grpc.AgentService` and
//! `grpc.Health`.
//!
//! Field names are Rust-style; the serde names are the protobuf field names, because the agent
//! policy evaluates `input` = the JSON of the request with proto field names (as Kata's agent
//! does: `container_id`, `OCI`, `storages[].driver`, `Process.Args`, ...). Two Kata JSON
//! conventions are kept on purpose so genpolicy-style rules work unchanged: a proto field named
//! `type` appears as `type_` (the Rust-escaped name Kata serialises), enums appear as their
//! number, and an absent singular message appears as `null`.

pub mod container;
pub mod guest;
pub mod health;
pub mod network;
pub mod oci;
pub mod oci_convert;
pub mod process;
pub mod sandbox;
pub mod stats;
pub mod stream;

pub use container::*;
pub use guest::*;
pub use health::*;
pub use network::*;
pub use oci::*;
pub use oci_convert::SpecConversionError;
pub use process::*;
pub use sandbox::*;
pub use stats::*;
pub use stream::*;

/// Declares a domain enum mirroring a protobuf enum: known values get variants, any other number
/// is kept in `Other(n)` so conversions never lose information. Serialised as the number.
macro_rules! proto_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident = $num:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(from = "i32", into = "i32")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A number this version of the contract does not name.
            Other(i32),
        }

        impl Default for $name {
            fn default() -> Self {
                Self::from(0)
            }
        }

        impl From<i32> for $name {
            fn from(number: i32) -> Self {
                match number {
                    $($num => Self::$variant,)+
                    other => Self::Other(other),
                }
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> i32 {
                match value {
                    $($name::$variant => $num,)+
                    $name::Other(other) => other,
                }
            }
        }

        impl $crate::convert::ProtoEnum for $name {
            fn from_number(number: i32) -> Self {
                Self::from(number)
            }
            fn number(self) -> i32 {
                i32::from(self)
            }
        }
    };
}
pub(crate) use proto_enum;
