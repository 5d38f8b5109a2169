//! `cargo fuzz run proxy_v2`: see `quicmq_tests::fuzz::proxy_v2`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quicmq_tests::fuzz::proxy_v2(data));
