//! JSON (policy input) shape: keys are exactly the proto field names, checked against the
//! generated descriptors; and the OCI conversion.

use std::collections::BTreeSet;

use protobuf::MessageFull;
use protobuf::reflect::{MessageDescriptor, RuntimeFieldType, RuntimeType};
use serde_json::{Value, json};

use super::samples;
use crate::request::AgentRequest;
use crate::types::*;
use crate::wire::{agent as a, csi as c, health as h};

/// The JSON key Kata's agent uses for a proto field (rust-protobuf escapes the keyword `type`).
fn json_key(proto_name: &str) -> String {
    if proto_name == "type" {
        "type_".to_owned()
    } else {
        proto_name.to_owned()
    }
}

fn nested(value: Option<&Value>, kind: &RuntimeType, path: &str) {
    if let (Some(value), RuntimeType::Message(inner)) = (value, kind)
        && !value.is_null()
    {
        assert_json_matches(value, inner, path);
    }
}

/// Asserts that the JSON object has exactly the descriptor's fields as keys, recursively.
fn assert_json_matches(value: &Value, descriptor: &MessageDescriptor, path: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{path}: expected an object, got {value}"));
    let mut expected = BTreeSet::new();
    for field in descriptor.fields() {
        if let Some(oneof) = field.containing_oneof() {
            expected.insert(oneof.name().to_owned());
            if let Some(Value::Object(inner)) = object.get(oneof.name()) {
                assert!(
                    inner.contains_key(field.name()),
                    "{path}.{}: oneof JSON lacks {}",
                    oneof.name(),
                    field.name()
                );
            }
            continue;
        }
        let key = json_key(field.name());
        let here = format!("{path}.{key}");
        let child = object.get(&key);
        match field.runtime_field_type() {
            RuntimeFieldType::Singular(kind) => nested(child, &kind, &here),
            RuntimeFieldType::Repeated(kind) => {
                for item in child.and_then(Value::as_array).into_iter().flatten() {
                    nested(Some(item), &kind, &here);
                }
            }
            RuntimeFieldType::Map(_, kind) => {
                for item in child.and_then(Value::as_object).into_iter().flatten() {
                    nested(Some(item.1), &kind, &here);
                }
            }
        }
        expected.insert(key);
    }
    let actual: BTreeSet<String> = object.keys().cloned().collect();
    assert_eq!(actual, expected, "JSON keys of {path}");
}

fn check<T: serde::Serialize>(value: &T, descriptor: MessageDescriptor) {
    let json = serde_json::to_value(value).expect("serialise");
    assert_json_matches(&json, &descriptor, descriptor.name());
}

#[test]
fn json_keys_are_the_proto_field_names() {
    check(
        &samples::create_container(),
        a::CreateContainerRequest::descriptor(),
    );
    check(
        &samples::create_sandbox(),
        a::CreateSandboxRequest::descriptor(),
    );
    check(
        &samples::exec_process(),
        a::ExecProcessRequest::descriptor(),
    );
    check(
        &samples::stats_response(),
        a::StatsContainerResponse::descriptor(),
    );
    check(
        &samples::guest_details_response(),
        a::GuestDetailsResponse::descriptor(),
    );
    check(&samples::copy_file(), a::CopyFileRequest::descriptor());
    check(
        &samples::volume_stats_response(),
        c::VolumeStatsResponse::descriptor(),
    );
    check(
        &UpdateInterfaceRequest {
            interface: Some(samples::interface()),
        },
        a::UpdateInterfaceRequest::descriptor(),
    );
    check(
        &UpdateRoutesRequest {
            routes: Some(samples::routes()),
        },
        a::UpdateRoutesRequest::descriptor(),
    );
    check(
        &AddARPNeighborsRequest {
            neighbors: Some(samples::arp_neighbors()),
        },
        a::AddARPNeighborsRequest::descriptor(),
    );
    check(
        &HealthCheckResponse::default(),
        h::HealthCheckResponse::descriptor(),
    );
    check(
        &MemAgentCompactConfig::default(),
        a::MemAgentCompactConfig::descriptor(),
    );
    check(
        &SetGuestDateTimeRequest::default(),
        a::SetGuestDateTimeRequest::descriptor(),
    );
    check(
        &MemHotplugByProbeRequest::default(),
        a::MemHotplugByProbeRequest::descriptor(),
    );
    check(&AddSwapRequest::default(), a::AddSwapRequest::descriptor());
}

#[test]
fn every_default_request_serialises_with_proto_field_names() {
    // Every RPC's default request: top-level keys must be the request message's fields.
    let pool = a::file_descriptor();
    let health = h::file_descriptor();
    for info in AgentRequest::HEALTH_RPCS
        .iter()
        .chain(AgentRequest::AGENT_RPCS)
    {
        let request = AgentRequest::default_for(info.rpc).expect("known rpc");
        if info.rpc == "CopyFile" {
            continue; // policy view, checked separately
        }
        let descriptor = pool
            .message_by_package_relative_name(info.policy_rule)
            .or_else(|| health.message_by_package_relative_name(info.policy_rule))
            .unwrap_or_else(|| panic!("no message {}", info.policy_rule));
        assert_json_matches(&request.to_policy_input(), &descriptor, info.policy_rule);
    }
}

#[test]
fn policy_input_has_the_paths_rules_use() {
    let input = AgentRequest::CreateContainer(samples::create_container()).to_policy_input();
    assert_eq!(input["container_id"], "c1");
    assert_eq!(input["storages"][0]["driver"], "image_guest_pull");
    assert_eq!(
        input["storages"][0]["mount_point"],
        "/run/kata-containers/c1/rootfs"
    );
    assert_eq!(input["storages"][0]["fs_group"]["group_change_policy"], 1);
    assert_eq!(input["OCI"]["Process"]["Args"][0], "/bin/sh");
    assert_eq!(
        input["OCI"]["Root"]["Path"],
        "/run/kata-containers/c1/rootfs"
    );
    assert_eq!(input["OCI"]["Mounts"][0]["type_"], "proc");
    assert_eq!(input["OCI"]["Linux"]["Namespaces"][0]["Type"], "network");
    assert_eq!(
        input["OCI"]["Annotations"]["io.kubernetes.cri.container-type"],
        "container"
    );
    assert_eq!(
        input["OCI"]["Linux"]["Seccomp"]["Syscalls"][0]["ErrnoRet"],
        json!({"errnoret": 1})
    );
    assert_eq!(input["devices"][0]["type_"], "blk");

    // Absent messages are null, as Kata serialises an unset MessageField.
    let input = AgentRequest::ExecProcess(ExecProcessRequest::default()).to_policy_input();
    assert_eq!(input["process"], Value::Null);
    assert_eq!(input["string_user"], Value::Null);
}

#[test]
fn copy_file_policy_input_is_the_preprocessed_view() {
    let input = AgentRequest::CopyFile(samples::copy_file()).to_policy_input();
    assert_eq!(input["file_type"], "Regular");
    assert_eq!(input["symlink_target"], Value::Null);
    assert!(
        input.get("data").is_none(),
        "data must not reach the policy"
    );
    assert_eq!(input["offset"], 3);

    let symlink = CopyFileRequest {
        path: "/run/kata-containers/shared/containers/link".into(),
        file_mode: 0o120_777,
        data: b"..data/token".to_vec(),
        ..Default::default()
    };
    let input = AgentRequest::CopyFile(symlink).to_policy_input();
    assert_eq!(input["file_type"], "Symlink");
    assert_eq!(input["symlink_target"], "..data/token");

    let dir = CopyFileRequest {
        file_mode: 0o040_755,
        ..Default::default()
    };
    assert_eq!(
        AgentRequest::CopyFile(dir).to_policy_input()["file_type"],
        "Directory"
    );
}

#[test]
fn json_round_trips_back_to_the_domain_value() {
    let original = samples::create_container();
    let json = serde_json::to_string(&original).expect("serialise");
    let back: CreateContainerRequest = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, original);
    // Missing keys take defaults (policy documents and fixtures may be partial).
    let partial: CreateContainerRequest =
        serde_json::from_value(json!({"container_id": "x"})).expect("partial");
    assert_eq!(partial.container_id, "x");
    assert!(partial.oci.is_none());
}

#[test]
fn spec_converts_to_oci_spec() {
    let spec = samples::spec().to_oci().expect("valid spec");
    let process = spec.process().as_ref().expect("process");
    assert_eq!(
        process.args().as_deref(),
        Some(&["/bin/sh".to_owned(), "-c".into(), "echo hi".into()][..])
    );
    assert_eq!(process.user().uid(), 1000);
    assert_eq!(
        process.user().additional_gids().as_deref(),
        Some(&[10, 20][..])
    );
    assert_eq!(process.cwd().to_str(), Some("/work"));
    assert_eq!(process.oom_score_adj(), Some(-500));
    assert_eq!(process.no_new_privileges(), Some(true));
    let caps = process.capabilities().as_ref().expect("caps");
    assert!(
        caps.bounding()
            .as_ref()
            .expect("bounding")
            .contains(&oci_spec::runtime::Capability::Chown)
    );
    let rlimit = &process.rlimits().as_ref().expect("rlimits")[0];
    assert_eq!(
        rlimit.typ(),
        oci_spec::runtime::PosixRlimitType::RlimitNofile
    );
    assert_eq!((rlimit.hard(), rlimit.soft()), (1024, 512));

    let root = spec.root().as_ref().expect("root");
    assert_eq!(root.path().to_str(), Some("/run/kata-containers/c1/rootfs"));
    assert_eq!(root.readonly(), Some(true));
    assert_eq!(spec.hostname().as_deref(), Some("pod"));
    let mounts = spec.mounts().as_ref().expect("mounts");
    assert_eq!(mounts[0].typ().as_deref(), Some("proc"));

    let linux = spec.linux().as_ref().expect("linux");
    let namespaces = linux.namespaces().as_ref().expect("namespaces");
    assert_eq!(
        namespaces[0].typ(),
        oci_spec::runtime::LinuxNamespaceType::Network
    );
    assert_eq!(
        namespaces[0].path().as_ref().and_then(|p| p.to_str()),
        Some("/var/run/netns/cni-1")
    );
    assert!(
        namespaces[1].path().is_none(),
        "empty path means a new namespace"
    );
    let memory = linux
        .resources()
        .as_ref()
        .and_then(|r| r.memory().as_ref())
        .expect("memory");
    assert_eq!(memory.limit(), Some(256 << 20));
    let seccomp = linux.seccomp().as_ref().expect("seccomp");
    let syscall = &seccomp.syscalls().as_ref().expect("syscalls")[0];
    assert_eq!(syscall.errno_ret(), Some(1));
    assert_eq!(
        spec.annotations()
            .as_ref()
            .and_then(|a| a.get("io.kubernetes.cri.container-type"))
            .map(String::as_str),
        Some("container")
    );
}

#[test]
fn zero_resources_are_left_unset() {
    let resources = LinuxResources {
        memory: Some(LinuxMemory::default()),
        pids: Some(LinuxPids { limit: 0 }),
        cpu: Some(LinuxCPU {
            quota: 20_000,
            ..Default::default()
        }),
        ..Default::default()
    };
    let oci = resources.to_oci().expect("valid");
    assert!(oci.memory().is_none(), "all-zero memory section dropped");
    assert!(oci.pids().is_none());
    let cpu = oci.cpu().as_ref().expect("cpu");
    assert_eq!(cpu.quota(), Some(20_000));
    assert_eq!(cpu.period(), None);
}

#[test]
fn invalid_spec_values_are_named_in_the_error() {
    let mut spec = samples::spec();
    if let Some(caps) = spec.process.as_mut().and_then(|p| p.capabilities.as_mut()) {
        caps.bounding = vec!["CAP_NOT_A_THING".into()];
    }
    let err = spec.to_oci().expect_err("bad capability");
    assert!(err.reason().contains("CAP_NOT_A_THING"), "{err}");

    let mut spec = samples::spec();
    if let Some(linux) = spec.linux.as_mut() {
        linux.namespaces[0].kind = "netwrok".into();
    }
    let err = spec.to_oci().expect_err("bad namespace");
    assert!(err.reason().contains("netwrok"), "{err}");

    let mut spec = samples::spec();
    if let Some(process) = spec.process.as_mut() {
        process.oom_score_adj = i64::from(i32::MAX) + 1;
    }
    let err = spec.to_oci().expect_err("oom score out of range");
    assert!(err.reason().contains("OOMScoreAdj"), "{err}");
}
