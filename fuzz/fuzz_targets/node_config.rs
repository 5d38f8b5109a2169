//! `cargo fuzz run node_config`: see `quicmq_tests::fuzz::node_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quicmq_tests::fuzz::node_config(data));
