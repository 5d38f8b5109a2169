//! `cargo fuzz run quic_lb_decoder`: see `quicmq_tests::fuzz::quic_lb_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quicmq_tests::fuzz::quic_lb_decoder(data));
