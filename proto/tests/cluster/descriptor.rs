//! The descriptor set the build produced: what `cluster.proto` declares,
//! that everything in it is documented, and that the build needs no
//! `protoc`.

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use quicmq_proto::cluster::FILE_DESCRIPTOR_SET;

fn cluster_file() -> FileDescriptorProto {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    let mut files = set.file.into_iter().filter(|f| f.name() == "cluster.proto");
    let file = files.next().expect("cluster.proto is in the set");
    assert!(files.next().is_none());
    file
}

#[test]
fn package_and_services() {
    let file = cluster_file();
    assert_eq!(file.package(), "quicmq.cluster.v1");
    assert_eq!(file.syntax(), "proto3");
    assert!(
        file.dependency.is_empty(),
        "no imports: {:?}",
        file.dependency
    );

    // (service, method, client streaming, server streaming)
    let mut methods: Vec<(String, String, bool, bool)> = file
        .service
        .iter()
        .flat_map(|s| {
            s.method.iter().map(|m| {
                (
                    s.name().to_owned(),
                    m.name().to_owned(),
                    m.client_streaming(),
                    m.server_streaming(),
                )
            })
        })
        .collect();
    methods.sort();
    let expected = [
        ("Admin", "Join", false, false),
        ("Admin", "Leave", false, false),
        ("Admin", "Status", false, false),
        ("ClusterWatch", "Watch", false, true),
        ("Forward", "Barrier", false, false),
        ("Forward", "Open", true, true),
        ("Raft", "AppendEntries", false, false),
        ("Raft", "ClientWrite", false, false),
        ("Raft", "InstallSnapshot", false, false),
        ("Raft", "Ping", false, false),
        ("Raft", "StreamSnapshot", true, false),
        ("Raft", "Vote", false, false),
    ];
    let expected: Vec<(String, String, bool, bool)> = expected
        .iter()
        .map(|(s, m, c, v)| (s.to_string(), m.to_string(), *c, *v))
        .collect();
    assert_eq!(methods, expected);
}

/// Every message, field, oneof, enum, enum value, service and method has a
/// leading comment (descriptor paths: message_type = 4, field = 2,
/// nested_type = 3, enum_type = 4/5 (nested/top), enum value = 2,
/// oneof_decl = 8, service = 6, method = 2).
#[test]
fn everything_is_documented() {
    let file = cluster_file();
    let info = file.source_code_info.as_ref().expect("source info kept");
    let documented: std::collections::HashSet<Vec<i32>> = info
        .location
        .iter()
        .filter(|l| !l.leading_comments().trim().is_empty())
        .map(|l| l.path.clone())
        .collect();

    let mut missing = Vec::new();
    let mut check = |path: Vec<i32>, what: String| {
        if !documented.contains(&path) {
            missing.push(what);
        }
    };
    for (i, message) in file.message_type.iter().enumerate() {
        let i = i as i32;
        check(vec![4, i], message.name().to_owned());
        assert!(message.nested_type.is_empty() && message.enum_type.is_empty());
        for (j, field) in message.field.iter().enumerate() {
            check(
                vec![4, i, 2, j as i32],
                format!("{}.{}", message.name(), field.name()),
            );
        }
        for (j, oneof) in message.oneof_decl.iter().enumerate() {
            // proto3 `optional` fields are synthetic oneofs named `_field`.
            if !oneof.name().starts_with('_') {
                check(
                    vec![4, i, 8, j as i32],
                    format!("{}.{}", message.name(), oneof.name()),
                );
            }
        }
    }
    for (i, enumeration) in file.enum_type.iter().enumerate() {
        let i = i as i32;
        check(vec![5, i], enumeration.name().to_owned());
        for (j, value) in enumeration.value.iter().enumerate() {
            check(vec![5, i, 2, j as i32], value.name().to_owned());
        }
    }
    for (i, service) in file.service.iter().enumerate() {
        let i = i as i32;
        check(vec![6, i], service.name().to_owned());
        for (j, method) in service.method.iter().enumerate() {
            check(
                vec![6, i, 2, j as i32],
                format!("{}.{}", service.name(), method.name()),
            );
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}

/// Enums follow the protobuf style guide: values prefixed with the enum's
/// name, and 0 is the "unspecified" value except where 0 is meaningful on
/// the wire (QoS 0).
#[test]
fn enum_conventions() {
    let file = cluster_file();
    for enumeration in &file.enum_type {
        let prefix: String = enumeration
            .name()
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
                sep.into_iter()
                    .chain(std::iter::once(c.to_ascii_uppercase()))
            })
            .collect::<String>()
            .replace("QUIC_L_B", "QUIC_LB");
        let zero = &enumeration.value[0];
        assert_eq!(zero.number(), 0);
        if enumeration.name() != "Qos" {
            assert_eq!(zero.name(), format!("{prefix}_UNSPECIFIED"));
        }
        for value in &enumeration.value {
            assert!(
                value.name().starts_with(&format!("{prefix}_")),
                "{} in {}",
                value.name(),
                enumeration.name()
            );
        }
    }
}

/// The code is generated by protox + tonic-prost-build: the build script
/// never runs (or looks for) `protoc`, so it builds where none is
/// installed. It also poisons `PROTOC`, so a code path that tried would
/// fail the build rather than depend on the machine.
#[test]
fn build_script_never_runs_protoc() {
    let build_rs = include_str!("../../build.rs");
    let code: String = build_rs
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(code.contains("protox::compile("));
    assert!(code.contains(".compile_fds("));
    assert!(code.contains("\"PROTOC\", \"/nonexistent/"));
    for forbidden in ["compile_protos", "Command::new", "protoc_from_env"] {
        assert!(!code.contains(forbidden), "build.rs uses {forbidden}");
    }
}
