//! Sandbox-level requests: CreateSandbox, DestroySandbox, storages and devices.

use serde::{Deserialize, Serialize};

use super::proto_enum;

/// `KernelModule`: a module the guest should load for this sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelModule {
    /// Module name (field 1).
    pub name: String,
    /// `key=value` parameters for modprobe (field 2).
    pub parameters: Vec<String>,
}

/// `CreateSandboxRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateSandboxRequest {
    /// Pod hostname (field 1).
    pub hostname: String,
    /// resolv.conf lines (field 2).
    pub dns: Vec<String>,
    /// Sandbox-wide storages (field 3).
    pub storages: Vec<Storage>,
    /// Create a shared PID namespace for the pod (field 4).
    pub sandbox_pidns: bool,
    /// Sandbox identifier (field 5).
    pub sandbox_id: String,
    /// Guest directory with OCI hooks, if any (field 6).
    pub guest_hook_path: String,
    /// Kernel modules to load (field 7).
    pub kernel_modules: Vec<KernelModule>,
}

/// `DestroySandboxRequest` (no fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroySandboxRequest {}

proto_enum! {
    /// `types.FSGroupChangePolicy`.
    FSGroupChangePolicy {
        /// 0: always change group ownership.
        Always = 0,
        /// 1: only when the volume root does not match.
        OnRootMismatch = 1,
    }
}

/// `FSGroup`: group ownership a mounted volume should get.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FSGroup {
    /// Group id (field 2).
    pub group_id: u32,
    /// Change policy (field 3).
    pub group_change_policy: FSGroupChangePolicy,
}

/// `Storage`: a filesystem the agent mounts in the guest (rootfs, volumes, guest-pulled images).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Storage {
    /// Handler name, e.g. `blk`, `virtio-fs`, `local`, `image_guest_pull` (field 1).
    pub driver: String,
    /// Handler-specific options (field 2).
    pub driver_options: Vec<String>,
    /// Source (device, path, image reference...) (field 3).
    pub source: String,
    /// Filesystem type (field 4).
    pub fstype: String,
    /// Mount options (field 5).
    pub options: Vec<String>,
    /// Guest mount point (field 6).
    pub mount_point: String,
    /// Group ownership to apply (field 7).
    pub fs_group: Option<FSGroup>,
    /// Shared by several containers; cleaned up with the sandbox (field 8).
    pub shared: bool,
}

/// `Device`: a device passed to a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Device {
    /// Guest identifier of the device (field 1).
    pub id: String,
    /// Device kind: `blk`, `scsi`, `vfio`, ... (field 2; JSON key `type_` as in Kata).
    #[serde(rename = "type_")]
    pub kind: String,
    /// Path of the device in the guest (field 3).
    pub vm_path: String,
    /// Path of the device in the container (field 4).
    pub container_path: String,
    /// Handler-specific options (field 5).
    pub options: Vec<String>,
}

/// `UpdateEphemeralMountsRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateEphemeralMountsRequest {
    /// Storages to refresh (field 1).
    pub storages: Vec<Storage>,
}

/// `RemoveStaleVirtiofsShareMountsRequest` (no fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveStaleVirtiofsShareMountsRequest {}
