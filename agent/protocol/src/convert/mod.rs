//! Conversions between the generated wire messages (`crate::wire`) and the domain types
//! (`crate::types`), in both directions. Everything here is crate-private.
//!
//! One trait, [`Wire`], carries both directions; blanket impls cover repeated fields, singular
//! message fields (`MessageField` <-> `Option`), proto3 `optional` scalars, maps and enums, so
//! each message conversion is a flat list of `domain_field: wire_field` pairs
//! (see [`wire_message!`]).

use std::collections::{BTreeMap, HashMap};

use protobuf::{EnumOrUnknown, MessageField};

mod agent;
mod network;
mod oci;

/// Conversion between a domain value and its generated wire representation `W`.
pub(crate) trait Wire<W>: Sized {
    /// Builds the domain value from the wire value.
    fn from_wire(wire: W) -> Self;
    /// Builds the wire value from the domain value.
    fn into_wire(self) -> W;
}

macro_rules! identity_wire {
    ($($t:ty),*) => {
        $(impl Wire<$t> for $t {
            fn from_wire(wire: $t) -> Self { wire }
            fn into_wire(self) -> $t { self }
        })*
    };
}
identity_wire!(String, bool, u8, u32, u64, i32, i64);

impl<T: Wire<W>, W> Wire<Vec<W>> for Vec<T> {
    fn from_wire(wire: Vec<W>) -> Self {
        wire.into_iter().map(T::from_wire).collect()
    }
    fn into_wire(self) -> Vec<W> {
        self.into_iter().map(T::into_wire).collect()
    }
}

impl<T: Wire<W>, W> Wire<MessageField<W>> for Option<T> {
    fn from_wire(wire: MessageField<W>) -> Self {
        wire.into_option().map(T::from_wire)
    }
    fn into_wire(self) -> MessageField<W> {
        MessageField::from_option(self.map(T::into_wire))
    }
}

impl<T: Wire<W>, W> Wire<Option<W>> for Option<T> {
    fn from_wire(wire: Option<W>) -> Self {
        wire.map(T::from_wire)
    }
    fn into_wire(self) -> Option<W> {
        self.map(T::into_wire)
    }
}

impl<T: Wire<W>, W> Wire<HashMap<String, W>> for BTreeMap<String, T> {
    fn from_wire(wire: HashMap<String, W>) -> Self {
        wire.into_iter()
            .map(|(k, v)| (k, T::from_wire(v)))
            .collect()
    }
    fn into_wire(self) -> HashMap<String, W> {
        self.into_iter().map(|(k, v)| (k, v.into_wire())).collect()
    }
}

/// Domain enums that carry the raw protobuf number (including unknown values).
pub(crate) trait ProtoEnum: Sized {
    fn from_number(number: i32) -> Self;
    fn number(self) -> i32;
}

impl<D: ProtoEnum, E: protobuf::Enum> Wire<EnumOrUnknown<E>> for D {
    fn from_wire(wire: EnumOrUnknown<E>) -> Self {
        D::from_number(wire.value())
    }
    fn into_wire(self) -> EnumOrUnknown<E> {
        EnumOrUnknown::from_i32(self.number())
    }
}

/// `wire_message!(Domain => wire::Type { domain_field: wire_field, .. });` implements [`Wire`] for
/// a message whose every field converts through [`Wire`].
macro_rules! wire_message {
    ($dom:ty => $wire:ty { $($d:ident : $w:ident),* $(,)? }) => {
        impl $crate::convert::Wire<$wire> for $dom {
            #[allow(unused_variables)]
            fn from_wire(wire: $wire) -> Self {
                Self { $($d: $crate::convert::Wire::from_wire(wire.$w)),* }
            }
            fn into_wire(self) -> $wire {
                #[allow(unused_mut)]
                let mut wire = <$wire>::default();
                $(wire.$w = $crate::convert::Wire::into_wire(self.$d);)*
                wire
            }
        }
    };
}
pub(crate) use wire_message;

/// Converts a domain value to wire and encodes it as protobuf bytes (used by tests and the
/// client to size frames).
#[cfg(test)]
pub(crate) fn encode<D: Wire<W>, W: protobuf::Message>(
    value: D,
) -> Result<Vec<u8>, protobuf::Error> {
    value.into_wire().write_to_bytes()
}

/// Parses protobuf bytes into the wire type and converts it to the domain value.
#[cfg(test)]
pub(crate) fn decode<D: Wire<W>, W: protobuf::Message>(bytes: &[u8]) -> Result<D, protobuf::Error> {
    W::parse_from_bytes(bytes).map(D::from_wire)
}

impl Wire<protobuf::well_known_types::empty::Empty> for () {
    fn from_wire(_wire: protobuf::well_known_types::empty::Empty) -> Self {}
    fn into_wire(self) -> protobuf::well_known_types::empty::Empty {
        protobuf::well_known_types::empty::Empty::new()
    }
}
