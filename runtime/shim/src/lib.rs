//! containerd shim v2 for Cocoon (`containerd-shim-cocoon-v2`, runtime type
//! `io.containerd.cocoon.v2`): one VM per pod; containers run by the in-guest agent.
//!
//! - [`shim`]: start / delete / serve lifecycle (ttRPC from `containerd-shim-protos`).
//! - [`flags`]: containerd's shim command line.
//! - [`task`]: containerd's task API mapped onto [`service::TaskService`].
//! - [`service`]: the pod's task service in domain terms, over the `runtime-core` ports.
//! - [`stdio`]: containerd fifos ↔ the agent's stream RPCs (32 KiB chunks).
//! - [`events`]: task events to containerd.
//! - [`cleanup`]: the bundle record and crash cleanup.
//! - [`qemu_vmm`]: the QEMU [`runtime_core::Vmm`].
//! - [`initdata`]: the `cc_init_data` annotation → initdata disk image and TEE binding.

pub mod cleanup;
pub mod entry;
pub mod events;
pub mod flags;
pub mod initdata;
pub mod qemu_vmm;
pub mod service;
pub mod shim;
pub mod stdio;
pub mod task;
