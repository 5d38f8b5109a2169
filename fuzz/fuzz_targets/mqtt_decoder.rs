//! `cargo fuzz run mqtt_decoder`: see `quicmq_tests::fuzz::mqtt_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quicmq_tests::fuzz::mqtt_decoder(data));
