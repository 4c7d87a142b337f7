//! Generated protobuf messages and ttRPC stubs (see build.rs). Private: no generated type leaves
//! the crate; the public API speaks the domain types in `crate::types`.

macro_rules! generated_module {
    ($name:ident, $file:literal) => {
        #[allow(
            missing_docs,
            unused_qualifications,
            unused_imports,
            unused_mut,
            unused_results,
            unused_attributes,
            unknown_lints,
            dead_code,
            trivial_casts,
            non_camel_case_types,
            non_snake_case,
            non_upper_case_globals,
            unreachable_pub,
            clippy::all,
            clippy::pedantic,
            clippy::unwrap_used,
            clippy::expect_used,
            clippy::undocumented_unsafe_blocks
        )]
        pub(crate) mod $name {
            include!(concat!(env!("OUT_DIR"), "/wire/", $file));
        }
    };
}

generated_module!(agent, "agent.rs");
generated_module!(agent_ttrpc, "agent_ttrpc.rs");
generated_module!(health, "health.rs");
generated_module!(health_ttrpc, "health_ttrpc.rs");
generated_module!(oci, "oci.rs");
generated_module!(types, "types.rs");
generated_module!(csi, "csi.rs");
