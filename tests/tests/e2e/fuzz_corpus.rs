//! The fuzz harnesses in the normal test suite: every committed seed and
//! regression input (`fuzz/seeds/TARGET/`, `fuzz/regressions/TARGET/`)
//! is replayed, then proptest mutates the seeds (flipped, inserted and
//! dropped bytes) and throws random inputs at each harness. A fuzz finding
//! is committed to `fuzz/regressions/` once fixed, so `cargo test` keeps
//! it fixed.

use std::path::PathBuf;

use proptest::prelude::*;
use quicmq_tests::fuzz::{self, TARGETS};

fn corpus_dir(kind: &str, target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target)
}

/// The committed inputs of `target` (seeds and regressions).
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut inputs = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(corpus_dir(kind, target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                inputs.push((path.clone(), std::fs::read(&path).expect("readable input")));
            }
        }
    }
    inputs.sort();
    inputs
}

#[test]
fn every_target_has_seeds_and_replays_them() {
    for (target, harness) in TARGETS {
        let inputs = inputs(target);
        assert!(
            inputs.len() >= 3,
            "{target}: fuzz/seeds/{target}/ should hold a few valid inputs"
        );
        for (path, data) in inputs {
            let replay = std::panic::catch_unwind(|| harness(&data));
            assert!(replay.is_ok(), "{target}: {} fails", path.display());
        }
    }
}

/// A seed of `target` with `edits` applied (position, byte, kind).
fn mutated(target: &str, pick: usize, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let seeds = inputs(target);
    let mut data = seeds
        .get(pick % seeds.len().max(1))
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    for &(at, byte, kind) in edits {
        let at = if data.is_empty() { 0 } else { at % data.len() };
        match kind % 3 {
            0 if !data.is_empty() => data[at] = byte,
            1 => data.insert(at.min(data.len()), byte),
            _ if !data.is_empty() => {
                data.remove(at);
            }
            _ => data.push(byte),
        }
    }
    data
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_mqtt_streams(pick in any::<usize>(), edits in edits()) {
        fuzz::mqtt_decoder(&mutated("mqtt_decoder", pick, &edits));
    }

    #[test]
    fn mutated_connection_ids(pick in any::<usize>(), edits in edits()) {
        fuzz::quic_lb_decoder(&mutated("quic_lb_decoder", pick, &edits));
    }

    #[test]
    fn mutated_proxy_v2_envelopes(pick in any::<usize>(), edits in edits()) {
        fuzz::proxy_v2(&mutated("proxy_v2", pick, &edits));
    }

    #[test]
    fn mutated_quic_headers(pick in any::<usize>(), edits in edits()) {
        fuzz::router_header(&mutated("router_header", pick, &edits));
    }

    #[test]
    fn mutated_configs(pick in any::<usize>(), edits in edits()) {
        fuzz::node_config(&mutated("node_config", pick, &edits));
    }

    #[test]
    fn random_bytes_everywhere(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        for (_, harness) in TARGETS {
            harness(&data);
        }
    }
}
