//! QEMU driver: argv builder, QMP client, process supervision and the agent channel.
//!
//! Only this crate spawns QEMU or speaks QMP. The argv builder ([`argv`]) and the QMP codec
//! ([`qmp::parse_message`], [`qmp::encode_command`]) are pure and tested without a VM;
//! [`sandbox::Sandbox`] composes them with real processes.

pub mod argv;
pub mod bench;
pub mod host;
pub mod process;
pub mod qmp;
pub mod sandbox;
pub mod vsock;

pub use argv::{AccelKind, AgentDevice, GuestForward, TeeLaunch, UserNetwork, VmSpec, build_argv};
pub use sandbox::{BootOptions, BootTimings, Sandbox, SandboxError};
