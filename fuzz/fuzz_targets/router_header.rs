//! `cargo fuzz run router_header`: see `quicmq_tests::fuzz::router_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quicmq_tests::fuzz::router_header(data));
