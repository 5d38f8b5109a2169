//! A rough cost measurement, ignored by default (numbers are only
//! meaningful in a release build):
//!
//! `cargo test -p quicmq-proto --release --test quic_lb -- --ignored --nocapture`

use std::hint::black_box;
use std::time::Instant;

use crate::codec;

#[test]
#[ignore = "timing, run by hand in release mode"]
fn decode_cost() {
    const N: u32 = 1_000_000;
    let cases = [
        ("plaintext 2+6", codec(0, 2, 6, None)),
        ("four-pass 2+6 (3 passes)", codec(0, 2, 6, Some([7; 16]))),
        ("four-pass 10+5 (4 passes)", codec(0, 10, 5, Some([7; 16]))),
        ("single-pass 8+8", codec(0, 8, 8, Some([7; 16]))),
    ];
    for (name, codec) in cases {
        let sid = vec![0x2a; codec.config().server_id_len()];
        let nonce = vec![0x55; codec.config().nonce_len()];
        let cid = codec.encode(&sid, &nonce).unwrap();
        let start = Instant::now();
        for _ in 0..N {
            black_box(codec.decode_server_id(black_box(&cid)).unwrap());
        }
        let decode = start.elapsed() / N;
        let start = Instant::now();
        for _ in 0..N {
            black_box(codec.encode(black_box(&sid), black_box(&nonce)).unwrap());
        }
        let encode = start.elapsed() / N;
        println!("{name:>28}: decode_server_id {decode:?}, encode {encode:?}");
    }
}
