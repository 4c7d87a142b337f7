//! Generates the protobuf messages and the async ttRPC client/server code for the agent wire
//! contract from `protos/` into `OUT_DIR` (pure Rust parser, no `protoc` needed).

use std::path::PathBuf;

use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

const PROTOS: &[&str] = &[
    "protos/agent.proto",
    "protos/health.proto",
    "protos/types.proto",
    "protos/oci.proto",
    "protos/csi.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?).join("wire");
    std::fs::create_dir_all(&out_dir)?;

    Codegen::new()
        .out_dir(&out_dir)
        .inputs(PROTOS)
        .include("protos")
        .rust_protobuf()
        .customize(Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(false))
        .run()?;

    // The generated files start with inner attributes (`#![allow(..)]`) and inner doc comments,
    // which `include!` cannot take; src/wire.rs applies the equivalent allows on each module.
    for entry in std::fs::read_dir(&out_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path)?;
            let kept: Vec<&str> = text
                .lines()
                .filter(|line| {
                    let line = line.trim_start();
                    !line.starts_with("#![") && !line.starts_with("//!")
                })
                .collect();
            std::fs::write(&path, kept.join("\n"))?;
        }
    }
    Ok(())
}
