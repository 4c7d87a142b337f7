//! Conversion of the wire [`Spec`] into an [`oci_spec::runtime::Spec`].
//!
//! The proto carries no field presence for scalars, so an empty string, an empty list or a zero
//! resource value means "not set" and is left out of the OCI spec (a zero memory limit would
//! otherwise mean zero bytes). The conversion goes through the runtime-spec JSON document
//! (`config.json` field names), so `oci-spec` validates enum-like values (capability names,
//! rlimit types, namespace types, seccomp actions, ...) and a bad value is reported by name.

use serde_json::{Map, Value, json};

use super::oci::*;

/// A [`Spec`] that cannot be expressed as an OCI runtime spec.
#[derive(Debug, thiserror::Error)]
#[error("invalid OCI spec in request: {reason}")]
pub struct SpecConversionError {
    reason: String,
}

impl SpecConversionError {
    /// What was wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl Spec {
    /// Converts to an [`oci_spec::runtime::Spec`].
    pub fn to_oci(&self) -> Result<oci_spec::runtime::Spec, SpecConversionError> {
        let document = self.to_runtime_json()?;
        serde_json::from_value(document).map_err(|e| SpecConversionError {
            reason: e.to_string(),
        })
    }

    /// The runtime-spec `config.json` document for this spec.
    pub fn to_runtime_json(&self) -> Result<Value, SpecConversionError> {
        let mut spec = Obj::default();
        spec.put("ociVersion", json!(self.version));
        if let Some(process) = &self.process {
            spec.put("process", process_json(process)?);
        }
        if let Some(root) = &self.root {
            spec.put(
                "root",
                json!({"path": root.path, "readonly": root.readonly}),
            );
        }
        spec.text("hostname", &self.hostname);
        spec.list("mounts", self.mounts.iter().map(mount_json).collect());
        if let Some(hooks) = &self.hooks {
            spec.put("hooks", hooks_json(hooks));
        }
        if !self.annotations.is_empty() {
            spec.put("annotations", json!(self.annotations));
        }
        if let Some(linux) = &self.linux {
            spec.put("linux", linux_json(linux));
        }
        Ok(spec.into())
    }
}

/// A JSON object builder that skips unset values.
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn put(&mut self, key: &str, value: Value) {
        self.0.insert(key.to_owned(), value);
    }
    fn text(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.put(key, json!(value));
        }
    }
    fn strings(&mut self, key: &str, values: &[String]) {
        if !values.is_empty() {
            self.put(key, json!(values));
        }
    }
    fn list(&mut self, key: &str, values: Vec<Value>) {
        if !values.is_empty() {
            self.put(key, Value::Array(values));
        }
    }
    fn nonzero_i64(&mut self, key: &str, value: i64) {
        if value != 0 {
            self.put(key, json!(value));
        }
    }
    fn nonzero_u64(&mut self, key: &str, value: u64) {
        if value != 0 {
            self.put(key, json!(value));
        }
    }
    fn object(&mut self, key: &str, value: Obj) {
        if !value.0.is_empty() {
            self.put(key, value.into());
        }
    }
}

impl From<Obj> for Value {
    fn from(obj: Obj) -> Value {
        Value::Object(obj.0)
    }
}

fn process_json(process: &Process) -> Result<Value, SpecConversionError> {
    let mut out = Obj::default();
    out.put("terminal", json!(process.terminal));
    if let Some(size) = &process.console_size {
        out.put(
            "consoleSize",
            json!({"height": size.height, "width": size.width}),
        );
    }
    let user = process.user.clone().unwrap_or_default();
    let mut user_json = Obj::default();
    user_json.put("uid", json!(user.uid));
    user_json.put("gid", json!(user.gid));
    if !user.additional_gids.is_empty() {
        user_json.put("additionalGids", json!(user.additional_gids));
    }
    user_json.text("username", &user.username);
    out.put("user", user_json.into());
    out.strings("args", &process.args);
    out.strings("env", &process.env);
    // The runtime spec requires a cwd; "/" is what runtimes assume when it is missing.
    let cwd = if process.cwd.is_empty() {
        "/"
    } else {
        &process.cwd
    };
    out.put("cwd", json!(cwd));
    if let Some(caps) = &process.capabilities {
        let mut caps_json = Obj::default();
        caps_json.put("bounding", json!(caps.bounding));
        caps_json.put("effective", json!(caps.effective));
        caps_json.put("inheritable", json!(caps.inheritable));
        caps_json.put("permitted", json!(caps.permitted));
        caps_json.put("ambient", json!(caps.ambient));
        out.put("capabilities", caps_json.into());
    }
    out.list(
        "rlimits",
        process
            .rlimits
            .iter()
            .map(|r| json!({"type": r.kind, "hard": r.hard, "soft": r.soft}))
            .collect(),
    );
    out.put("noNewPrivileges", json!(process.no_new_privileges));
    out.text("apparmorProfile", &process.apparmor_profile);
    let oom_score_adj = i32::try_from(process.oom_score_adj).map_err(|_| SpecConversionError {
        reason: format!(
            "Process.OOMScoreAdj {} is out of range",
            process.oom_score_adj
        ),
    })?;
    out.put("oomScoreAdj", json!(oom_score_adj));
    out.text("selinuxLabel", &process.selinux_label);
    Ok(out.into())
}

fn mount_json(mount: &Mount) -> Value {
    let mut out = Obj::default();
    out.put("destination", json!(mount.destination));
    out.text("source", &mount.source);
    out.text("type", &mount.kind);
    out.strings("options", &mount.options);
    out.into()
}

fn hook_list(hooks: &[Hook]) -> Vec<Value> {
    hooks
        .iter()
        .map(|hook| {
            let mut out = Obj::default();
            out.put("path", json!(hook.path));
            out.strings("args", &hook.args);
            out.strings("env", &hook.env);
            if hook.timeout > 0 {
                out.put("timeout", json!(hook.timeout));
            }
            out.into()
        })
        .collect()
}

fn hooks_json(hooks: &Hooks) -> Value {
    let mut out = Obj::default();
    out.list("prestart", hook_list(&hooks.prestart));
    out.list("createRuntime", hook_list(&hooks.create_runtime));
    out.list("createContainer", hook_list(&hooks.create_container));
    out.list("startContainer", hook_list(&hooks.start_container));
    out.list("poststart", hook_list(&hooks.poststart));
    out.list("poststop", hook_list(&hooks.poststop));
    out.into()
}

fn id_mappings(mappings: &[LinuxIDMapping]) -> Vec<Value> {
    mappings
        .iter()
        .map(|m| json!({"containerID": m.container_id, "hostID": m.host_id, "size": m.size}))
        .collect()
}

fn linux_json(linux: &Linux) -> Value {
    let mut out = Obj::default();
    out.list("uidMappings", id_mappings(&linux.uid_mappings));
    out.list("gidMappings", id_mappings(&linux.gid_mappings));
    if !linux.sysctl.is_empty() {
        out.put("sysctl", json!(linux.sysctl));
    }
    if let Some(resources) = &linux.resources {
        out.put("resources", resources_json(resources));
    }
    out.text("cgroupsPath", &linux.cgroups_path);
    out.list(
        "namespaces",
        linux
            .namespaces
            .iter()
            .map(|ns| {
                let mut n = Obj::default();
                n.put("type", json!(ns.kind));
                n.text("path", &ns.path);
                n.into()
            })
            .collect(),
    );
    out.list(
        "devices",
        linux
            .devices
            .iter()
            .map(|d| {
                json!({
                    "path": d.path, "type": d.kind, "major": d.major, "minor": d.minor,
                    "fileMode": d.file_mode, "uid": d.uid, "gid": d.gid,
                })
            })
            .collect(),
    );
    if let Some(seccomp) = &linux.seccomp {
        out.put("seccomp", seccomp_json(seccomp));
    }
    out.text("rootfsPropagation", &linux.rootfs_propagation);
    out.strings("maskedPaths", &linux.masked_paths);
    out.strings("readonlyPaths", &linux.readonly_paths);
    out.text("mountLabel", &linux.mount_label);
    if let Some(rdt) = &linux.intel_rdt {
        let mut r = Obj::default();
        r.text("l3CacheSchema", &rdt.l3_cache_schema);
        out.put("intelRdt", r.into());
    }
    out.into()
}

fn seccomp_json(seccomp: &LinuxSeccomp) -> Value {
    let mut out = Obj::default();
    out.put("defaultAction", json!(seccomp.default_action));
    out.strings("architectures", &seccomp.architectures);
    out.strings("flags", &seccomp.flags);
    out.list(
        "syscalls",
        seccomp
            .syscalls
            .iter()
            .map(|sc| {
                let mut s = Obj::default();
                s.put("names", json!(sc.names));
                s.put("action", json!(sc.action));
                if let Some(SyscallErrnoRet::Errnoret(errno)) = sc.errno_ret {
                    s.put("errnoRet", json!(errno));
                }
                s.list(
                    "args",
                    sc.args
                        .iter()
                        .map(|a| {
                            json!({"index": a.index, "value": a.value,
                                   "valueTwo": a.value_two, "op": a.op})
                        })
                        .collect(),
                );
                s.into()
            })
            .collect(),
    );
    out.into()
}

fn throttle_list(devices: &[LinuxThrottleDevice]) -> Vec<Value> {
    devices
        .iter()
        .map(|d| json!({"major": d.major, "minor": d.minor, "rate": d.rate}))
        .collect()
}

/// The runtime-spec `linux.resources` document (zero = unset).
pub(crate) fn resources_json(resources: &LinuxResources) -> Value {
    let mut out = Obj::default();
    out.list(
        "devices",
        resources
            .devices
            .iter()
            .map(|d| {
                let mut dev = Obj::default();
                dev.put("allow", json!(d.allow));
                dev.text("type", &d.kind);
                // -1 is the wire's wildcard; the runtime spec leaves the field out instead.
                if d.major >= 0 {
                    dev.put("major", json!(d.major));
                }
                if d.minor >= 0 {
                    dev.put("minor", json!(d.minor));
                }
                dev.text("access", &d.access);
                dev.into()
            })
            .collect(),
    );
    if let Some(memory) = &resources.memory {
        let mut m = Obj::default();
        m.nonzero_i64("limit", memory.limit);
        m.nonzero_i64("reservation", memory.reservation);
        m.nonzero_i64("swap", memory.swap);
        m.nonzero_i64("kernel", memory.kernel);
        m.nonzero_i64("kernelTCP", memory.kernel_tcp);
        m.nonzero_u64("swappiness", memory.swappiness);
        if memory.disable_oom_killer {
            m.put("disableOOMKiller", json!(true));
        }
        out.object("memory", m);
    }
    if let Some(cpu) = &resources.cpu {
        let mut c = Obj::default();
        c.nonzero_u64("shares", cpu.shares);
        c.nonzero_i64("quota", cpu.quota);
        c.nonzero_u64("period", cpu.period);
        c.nonzero_i64("realtimeRuntime", cpu.realtime_runtime);
        c.nonzero_u64("realtimePeriod", cpu.realtime_period);
        c.text("cpus", &cpu.cpus);
        c.text("mems", &cpu.mems);
        out.object("cpu", c);
    }
    if let Some(pids) = &resources.pids
        && pids.limit != 0
    {
        out.put("pids", json!({"limit": pids.limit}));
    }
    if let Some(blkio) = &resources.block_io {
        let mut b = Obj::default();
        if blkio.weight != 0 {
            b.put("weight", json!(blkio.weight));
        }
        if blkio.leaf_weight != 0 {
            b.put("leafWeight", json!(blkio.leaf_weight));
        }
        b.list(
            "weightDevice",
            blkio
                .weight_device
                .iter()
                .map(|d| {
                    json!({"major": d.major, "minor": d.minor, "weight": d.weight,
                           "leafWeight": d.leaf_weight})
                })
                .collect(),
        );
        b.list(
            "throttleReadBpsDevice",
            throttle_list(&blkio.throttle_read_bps_device),
        );
        b.list(
            "throttleWriteBpsDevice",
            throttle_list(&blkio.throttle_write_bps_device),
        );
        b.list(
            "throttleReadIOPSDevice",
            throttle_list(&blkio.throttle_read_iops_device),
        );
        b.list(
            "throttleWriteIOPSDevice",
            throttle_list(&blkio.throttle_write_iops_device),
        );
        out.object("blockIO", b);
    }
    out.list(
        "hugepageLimits",
        resources
            .hugepage_limits
            .iter()
            .map(|h| json!({"pageSize": h.pagesize, "limit": h.limit}))
            .collect(),
    );
    if let Some(network) = &resources.network {
        let mut n = Obj::default();
        if network.class_id != 0 {
            n.put("classID", json!(network.class_id));
        }
        n.list(
            "priorities",
            network
                .priorities
                .iter()
                .map(|p| json!({"name": p.name, "priority": p.priority}))
                .collect(),
        );
        out.object("network", n);
    }
    out.into()
}

impl LinuxResources {
    /// Converts to [`oci_spec::runtime::LinuxResources`] (for UpdateContainer).
    pub fn to_oci(&self) -> Result<oci_spec::runtime::LinuxResources, SpecConversionError> {
        serde_json::from_value(resources_json(self)).map_err(|e| SpecConversionError {
            reason: e.to_string(),
        })
    }
}
