//! Domain <-> wire round trips through protobuf bytes, and field-number checks against an
//! independent decoder of the protobuf wire format.

use protobuf::reflect::{ReflectFieldRef, ReflectValueRef};
use protobuf::{MessageDyn, MessageFull};

use super::samples;
use crate::convert::{Wire, decode, encode};
use crate::types::*;
use crate::wire::{agent as a, csi as c, health as h, types as t};

/// Asserts (through reflection) that every field of `msg` is set to a non-default value,
/// recursing into nested messages (first element of lists, every map value).
fn assert_fully_populated(msg: &dyn MessageDyn, path: &str) {
    let descriptor = msg.descriptor_dyn();
    for field in descriptor.fields() {
        let here = format!("{path}.{}", field.name());
        match field.get_reflect(msg) {
            ReflectFieldRef::Optional(value) => match value.value() {
                Some(ReflectValueRef::Message(inner)) => assert_fully_populated(&*inner, &here),
                Some(_) => {}
                None => panic!("sample leaves {here} unset"),
            },
            ReflectFieldRef::Repeated(list) => {
                assert!(!list.is_empty(), "sample leaves {here} empty");
                if let ReflectValueRef::Message(inner) = list.get(0) {
                    assert_fully_populated(&*inner, &format!("{here}[0]"));
                }
            }
            ReflectFieldRef::Map(map) => {
                assert!(!map.is_empty(), "sample leaves {here} empty");
                for (_, value) in &map {
                    if let ReflectValueRef::Message(inner) = value {
                        assert_fully_populated(&*inner, &format!("{here}[]"));
                    }
                }
            }
        }
    }
}

/// Domain -> wire -> bytes -> wire -> domain must give the value back, and the sample must set
/// every field (so the round trip covers every field conversion).
fn round_trip<D, W>(value: D)
where
    D: Wire<W> + Clone + PartialEq + std::fmt::Debug,
    W: MessageFull,
{
    let wire: W = value.clone().into_wire();
    assert_fully_populated(&wire, W::NAME);
    let bytes = encode::<D, W>(value.clone()).expect("encode");
    let back: D = decode::<D, W>(&bytes).expect("decode");
    assert_eq!(back, value, "{} round trip", W::NAME);
}

#[test]
fn every_message_round_trips_with_every_field_set() {
    round_trip::<_, h::CheckRequest>(CheckRequest {
        service: "grpc.AgentService".into(),
    });
    round_trip::<_, h::HealthCheckResponse>(HealthCheckResponse {
        status: ServingStatus::Serving,
    });
    round_trip::<_, h::VersionCheckResponse>(VersionCheckResponse {
        grpc_version: "g".into(),
        agent_version: "a".into(),
    });
    round_trip::<_, a::CreateContainerRequest>(samples::create_container());
    round_trip::<_, a::CreateSandboxRequest>(samples::create_sandbox());
    round_trip::<_, a::ExecProcessRequest>(samples::exec_process());
    round_trip::<_, a::StartContainerRequest>(StartContainerRequest {
        container_id: "c".into(),
    });
    round_trip::<_, a::RemoveContainerRequest>(RemoveContainerRequest {
        container_id: "c".into(),
        timeout: 10,
    });
    round_trip::<_, a::SignalProcessRequest>(SignalProcessRequest {
        container_id: "c".into(),
        exec_id: "e".into(),
        signal: 9,
    });
    round_trip::<_, a::WaitProcessRequest>(WaitProcessRequest {
        container_id: "c".into(),
        exec_id: "e".into(),
    });
    round_trip::<_, a::WaitProcessResponse>(WaitProcessResponse { status: 137 });
    round_trip::<_, a::UpdateContainerRequest>(UpdateContainerRequest {
        container_id: "c".into(),
        resources: Some(samples::resources()),
    });
    round_trip::<_, a::UpdateEphemeralMountsRequest>(UpdateEphemeralMountsRequest {
        storages: vec![samples::storage()],
    });
    round_trip::<_, a::StatsContainerRequest>(StatsContainerRequest {
        container_id: "c".into(),
    });
    round_trip::<_, a::StatsContainerResponse>(samples::stats_response());
    round_trip::<_, a::PauseContainerRequest>(PauseContainerRequest {
        container_id: "c".into(),
    });
    round_trip::<_, a::ResumeContainerRequest>(ResumeContainerRequest {
        container_id: "c".into(),
    });
    round_trip::<_, a::GetDiagnosticDataRequest>(GetDiagnosticDataRequest {
        log_type: "agent".into(),
        container_id: "c".into(),
    });
    round_trip::<_, a::GetDiagnosticDataResponse>(GetDiagnosticDataResponse { data: "log".into() });
    round_trip::<_, a::WriteStreamRequest>(WriteStreamRequest {
        container_id: "c".into(),
        exec_id: "e".into(),
        data: vec![0, 1, 255],
    });
    round_trip::<_, a::WriteStreamResponse>(WriteStreamResponse { len: 3 });
    round_trip::<_, a::ReadStreamRequest>(ReadStreamRequest {
        container_id: "c".into(),
        exec_id: "e".into(),
        len: 4096,
    });
    round_trip::<_, a::ReadStreamResponse>(ReadStreamResponse {
        data: b"hello\n".to_vec(),
    });
    round_trip::<_, a::CloseStdinRequest>(CloseStdinRequest {
        container_id: "c".into(),
        exec_id: "e".into(),
    });
    round_trip::<_, a::TtyWinResizeRequest>(TtyWinResizeRequest {
        container_id: "c".into(),
        exec_id: "e".into(),
        row: 40,
        column: 120,
    });
    round_trip::<_, t::Interface>(samples::interface());
    round_trip::<_, a::UpdateInterfaceRequest>(UpdateInterfaceRequest {
        interface: Some(samples::interface()),
    });
    round_trip::<_, a::UpdateRoutesRequest>(UpdateRoutesRequest {
        routes: Some(samples::routes()),
    });
    round_trip::<_, a::Routes>(samples::routes());
    round_trip::<_, a::Interfaces>(Interfaces {
        interfaces: vec![samples::interface()],
    });
    round_trip::<_, a::AddARPNeighborsRequest>(AddARPNeighborsRequest {
        neighbors: Some(samples::arp_neighbors()),
    });
    round_trip::<_, a::GetIPTablesRequest>(GetIPTablesRequest { is_ipv6: true });
    round_trip::<_, a::GetIPTablesResponse>(GetIPTablesResponse {
        data: b"*filter".to_vec(),
    });
    round_trip::<_, a::SetIPTablesRequest>(SetIPTablesRequest {
        is_ipv6: true,
        data: b"*nat".to_vec(),
    });
    round_trip::<_, a::SetIPTablesResponse>(SetIPTablesResponse {
        data: b"ok".to_vec(),
    });
    round_trip::<_, a::Metrics>(Metrics {
        metrics: "up 1".into(),
    });
    round_trip::<_, a::MemAgentMemcgConfig>(MemAgentMemcgConfig {
        disabled: Some(false),
        swap: Some(true),
        swappiness_max: Some(50),
        period_secs: Some(60),
        period_psi_percent_limit: Some(1),
        eviction_psi_percent_limit: Some(2),
        eviction_run_aging_count_min: Some(3),
    });
    round_trip::<_, a::MemAgentCompactConfig>(MemAgentCompactConfig {
        disabled: Some(true),
        period_secs: Some(1),
        period_psi_percent_limit: Some(2),
        compact_psi_percent_limit: Some(3),
        compact_sec_max: Some(-1),
        compact_order: Some(4),
        compact_threshold: Some(5),
        compact_force_times: Some(6),
    });
    round_trip::<_, a::OnlineCPUMemRequest>(OnlineCPUMemRequest {
        wait: true,
        nb_cpus: 2,
        cpu_only: true,
    });
    round_trip::<_, a::ReseedRandomDevRequest>(ReseedRandomDevRequest { data: vec![7; 32] });
    round_trip::<_, a::GuestDetailsRequest>(GuestDetailsRequest {
        mem_block_size: true,
        mem_hotplug_probe: true,
    });
    round_trip::<_, a::GuestDetailsResponse>(samples::guest_details_response());
    round_trip::<_, a::MemHotplugByProbeRequest>(MemHotplugByProbeRequest {
        mem_hotplug_probe_addr: vec![0x1_0000_0000],
    });
    round_trip::<_, a::SetGuestDateTimeRequest>(SetGuestDateTimeRequest {
        sec: 1_700_000_000,
        usec: 123,
    });
    round_trip::<_, a::CopyFileRequest>(samples::copy_file());
    round_trip::<_, a::OOMEvent>(OOMEvent {
        container_id: "c".into(),
    });
    round_trip::<_, a::AddSwapRequest>(AddSwapRequest {
        pci_path: vec![2, 1],
    });
    round_trip::<_, a::AddSwapPathRequest>(AddSwapPathRequest {
        path: "/swap".into(),
    });
    round_trip::<_, a::VolumeStatsRequest>(VolumeStatsRequest {
        volume_guest_path: "/v".into(),
    });
    round_trip::<_, c::VolumeStatsResponse>(samples::volume_stats_response());
    round_trip::<_, a::ResizeVolumeRequest>(ResizeVolumeRequest {
        volume_guest_path: "/v".into(),
        size: 1 << 30,
    });
    round_trip::<_, a::SetPolicyRequest>(SetPolicyRequest {
        policy: "package agent_policy".into(),
    });
}

#[test]
fn unknown_enum_numbers_survive_the_round_trip() {
    let value = HealthCheckResponse {
        status: ServingStatus::Other(7),
    };
    let bytes = encode::<_, h::HealthCheckResponse>(value.clone()).expect("encode");
    assert_eq!(bytes, [0x08, 0x07]);
    let back: HealthCheckResponse = decode::<_, h::HealthCheckResponse>(&bytes).expect("decode");
    assert_eq!(back, value);
}

// ---- an independent protobuf wire-format reader (the oracle for field numbers) ----

#[derive(Debug, PartialEq)]
enum RawValue {
    Varint(u64),
    Bytes(Vec<u8>),
    Fixed64(u64),
    Fixed32(u32),
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint too long");
}

/// Splits a message into (field number, value) pairs, in wire order.
fn fields(bytes: &[u8]) -> Vec<(u64, RawValue)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let key = read_varint(bytes, &mut pos);
        let (number, wire_type) = (key >> 3, key & 7);
        let value = match wire_type {
            0 => RawValue::Varint(read_varint(bytes, &mut pos)),
            1 => {
                let v = u64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
                pos += 8;
                RawValue::Fixed64(v)
            }
            2 => {
                let len = usize::try_from(read_varint(bytes, &mut pos)).expect("len");
                let v = bytes[pos..pos + len].to_vec();
                pos += len;
                RawValue::Bytes(v)
            }
            5 => {
                let v = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
                pos += 4;
                RawValue::Fixed32(v)
            }
            other => panic!("unexpected wire type {other}"),
        };
        out.push((number, value));
    }
    out
}

fn field(parsed: &[(u64, RawValue)], number: u64) -> Vec<&RawValue> {
    parsed
        .iter()
        .filter(|(n, _)| *n == number)
        .map(|(_, v)| v)
        .collect()
}

fn bytes_of(value: &RawValue) -> &[u8] {
    match value {
        RawValue::Bytes(b) => b,
        other => panic!("expected a length-delimited field, got {other:?}"),
    }
}

#[test]
fn field_numbers_match_kata() {
    // CreateContainerRequest: container_id = 1, storages = 5, OCI = 6, stderr_port = 11;
    // Storage: driver = 1, mount_point = 6, fs_group = 7 {group_id = 2}, shared = 8.
    let request = samples::create_container();
    let bytes = encode::<_, a::CreateContainerRequest>(request).expect("encode");
    let top = fields(&bytes);
    assert_eq!(field(&top, 1), [&RawValue::Bytes(b"c1".to_vec())]);
    assert_eq!(field(&top, 11), [&RawValue::Varint(3)]);
    let storages = field(&top, 5);
    assert_eq!(storages.len(), 1, "one storage in field 5");
    let storage = fields(bytes_of(storages[0]));
    assert_eq!(
        field(&storage, 1),
        [&RawValue::Bytes(b"image_guest_pull".to_vec())]
    );
    assert_eq!(
        field(&storage, 6),
        [&RawValue::Bytes(b"/run/kata-containers/c1/rootfs".to_vec())]
    );
    assert_eq!(field(&storage, 8), [&RawValue::Varint(1)]);
    let fs_group = fields(bytes_of(field(&storage, 7)[0]));
    assert_eq!(field(&fs_group, 2), [&RawValue::Varint(1000)]);
    assert_eq!(field(&fs_group, 3), [&RawValue::Varint(1)]);
    // OCI (6) -> Root (3) -> Path (1); OCI -> Process (2) -> Args (4).
    let spec = fields(bytes_of(field(&top, 6)[0]));
    let root = fields(bytes_of(field(&spec, 3)[0]));
    assert_eq!(
        field(&root, 1),
        [&RawValue::Bytes(b"/run/kata-containers/c1/rootfs".to_vec())]
    );
    let process = fields(bytes_of(field(&spec, 2)[0]));
    assert_eq!(field(&process, 4).len(), 3, "three Args in Process field 4");
    // OCI -> Linux (8) -> Namespaces (6) -> Type (1).
    let linux = fields(bytes_of(field(&spec, 8)[0]));
    let namespace = fields(bytes_of(field(&linux, 6)[0]));
    assert_eq!(
        field(&namespace, 1),
        [&RawValue::Bytes(b"network".to_vec())]
    );

    // WaitProcessResponse.status = 1 (int32 varint): exactly 08 89 01 for 137.
    let bytes =
        encode::<_, a::WaitProcessResponse>(WaitProcessResponse { status: 137 }).expect("encode");
    assert_eq!(bytes, [0x08, 0x89, 0x01]);

    // GuestDetailsResponse: mem_block_size_bytes = 1, agent_details = 2 {version = 1}.
    let bytes =
        encode::<_, a::GuestDetailsResponse>(samples::guest_details_response()).expect("encode");
    let top = fields(&bytes);
    assert_eq!(field(&top, 1), [&RawValue::Varint(128 << 20)]);
    let details = fields(bytes_of(field(&top, 2)[0]));
    assert_eq!(field(&details, 1), [&RawValue::Bytes(b"0.1.0".to_vec())]);
    assert_eq!(field(&top, 3), [&RawValue::Varint(1)]);

    // ReseedRandomDevRequest.data is field 2 (field 1 is unused upstream).
    let bytes = encode::<_, a::ReseedRandomDevRequest>(ReseedRandomDevRequest { data: vec![1, 2] })
        .expect("encode");
    assert_eq!(bytes, [0x12, 0x02, 0x01, 0x02]);

    // CopyFileRequest: path = 1, data = 8.
    let bytes = encode::<_, a::CopyFileRequest>(samples::copy_file()).expect("encode");
    let top = fields(&bytes);
    assert_eq!(field(&top, 8), [&RawValue::Bytes(b"pod\n".to_vec())]);
    assert_eq!(field(&top, 3), [&RawValue::Varint(0o100_644)]);

    // HealthCheckResponse.status = 1: SERVING is 08 01.
    let bytes = encode::<_, h::HealthCheckResponse>(HealthCheckResponse {
        status: ServingStatus::Serving,
    })
    .expect("encode");
    assert_eq!(bytes, [0x08, 0x01]);

    // SetGuestDateTimeRequest: Sec = 1, Usec = 2 (int64 varints).
    let bytes =
        encode::<_, a::SetGuestDateTimeRequest>(SetGuestDateTimeRequest { sec: 5, usec: 6 })
            .expect("encode");
    assert_eq!(bytes, [0x08, 0x05, 0x10, 0x06]);

    // LinuxSyscall oneof ErrnoRet: errnoret = 3.
    let spec_bytes = encode::<_, crate::wire::oci::Spec>(samples::spec()).expect("encode");
    let linux = fields(bytes_of(field(&fields(&spec_bytes), 8)[0]));
    let seccomp = fields(bytes_of(field(&linux, 8)[0]));
    let syscall = fields(bytes_of(field(&seccomp, 4)[0]));
    assert_eq!(field(&syscall, 3), [&RawValue::Varint(1)]);
}

#[test]
fn decoding_garbage_is_an_error_not_a_panic() {
    // Field 5 (storages) claims 100 bytes but only 2 follow.
    let truncated = [0x2a, 100, 1, 2];
    assert!(decode::<CreateContainerRequest, a::CreateContainerRequest>(&truncated).is_err());
    // Wire type 7 does not exist.
    assert!(decode::<WaitProcessResponse, a::WaitProcessResponse>(&[0x0f, 0x00]).is_err());
}
