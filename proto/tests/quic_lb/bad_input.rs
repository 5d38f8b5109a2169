//! Connection IDs and inputs that are not valid: each gives one exact
//! error, and no input makes a codec panic.

use proptest::collection::vec;
use proptest::prelude::*;
use quicmq_proto::quic_lb::{LbCodec, LbConfig, QuicLbError};

use crate::codec;

/// One codec of each algorithm, with different config IDs and lengths.
fn codecs() -> Vec<LbCodec> {
    vec![
        codec(0, 3, 4, None),
        codec(1, 5, 5, None),
        codec(2, 8, 8, Some([0x11; 16])),
        codec(3, 3, 4, Some([0x22; 16])),
        codec(4, 10, 5, Some([0x33; 16])),
        codec(5, 9, 9, Some([0x44; 16])),
        codec(6, 1, 18, Some([0x55; 16])),
    ]
}

fn both(codec: &LbCodec, cid: &[u8]) -> (Result<(), QuicLbError>, Result<(), QuicLbError>) {
    (
        codec.decode_server_id(cid).map(|_| ()),
        codec.decode(cid).map(|_| ()),
    )
}

fn rejects(codec: &LbCodec, cid: &[u8], error: QuicLbError) {
    assert_eq!(both(codec, cid), (Err(error), Err(error)), "{cid:02x?}");
}

#[test]
fn empty_cid() {
    for codec in codecs() {
        let expected = codec.config().cid_len();
        rejects(
            &codec,
            &[],
            QuicLbError::CidLength {
                expected,
                actual: 0,
            },
        );
    }
}

#[test]
fn unroutable_codepoint() {
    for codec in codecs() {
        let mut cid = codec
            .encode(
                &vec![1; codec.config().server_id_len()],
                &vec![2; codec.config().nonce_len()],
            )
            .unwrap()
            .to_vec();
        cid[0] |= 0xe0;
        rejects(&codec, &cid, QuicLbError::Unroutable);
        rejects(&codec, &[0xff], QuicLbError::Unroutable);
        rejects(&codec, &[0xe0; 20], QuicLbError::Unroutable);
    }
}

#[test]
fn other_config_ids() {
    for codec in codecs() {
        let own = codec.config().config_id();
        let sid = vec![1; codec.config().server_id_len()];
        let nonce = vec![2; codec.config().nonce_len()];
        let cid = codec.encode(&sid, &nonce).unwrap();
        for other in (0..=6).filter(|&id| id != own) {
            let mut wrong = cid.to_vec();
            wrong[0] = (wrong[0] & 0x1f) | (other << 5);
            rejects(
                &codec,
                &wrong,
                QuicLbError::UnknownConfig {
                    found: other,
                    expected: own,
                },
            );
        }
    }
}

#[test]
fn wrong_lengths() {
    for codec in codecs() {
        let expected = codec.config().cid_len();
        let sid = vec![1; codec.config().server_id_len()];
        let nonce = vec![2; codec.config().nonce_len()];
        let cid = codec.encode(&sid, &nonce).unwrap().to_vec();
        for actual in 1..expected {
            rejects(
                &codec,
                &cid[..actual],
                QuicLbError::CidLength { expected, actual },
            );
        }
        let mut long = cid.clone();
        long.push(0);
        rejects(
            &codec,
            &long,
            QuicLbError::CidLength {
                expected,
                actual: expected + 1,
            },
        );
        // Right length, wrong self-encoded length.
        for encoded in (1..=32).filter(|&e| e != expected) {
            let mut wrong = cid.clone();
            wrong[0] = (wrong[0] & 0xe0) | (encoded - 1) as u8;
            rejects(
                &codec,
                &wrong,
                QuicLbError::EncodedLength { expected, encoded },
            );
        }
    }
}

#[test]
fn encode_checks_input_lengths() {
    for codec in codecs() {
        let sid_len = codec.config().server_id_len();
        let nonce_len = codec.config().nonce_len();
        for bad in [0, sid_len - 1, sid_len + 1, 20] {
            if bad == sid_len {
                continue;
            }
            assert_eq!(
                codec.encode(&vec![0; bad], &vec![0; nonce_len]),
                Err(QuicLbError::ServerIdLength {
                    expected: sid_len,
                    actual: bad
                })
            );
        }
        for bad in [0, nonce_len - 1, nonce_len + 1, 20] {
            assert_eq!(
                codec.encode(&vec![0; sid_len], &vec![0; bad]),
                Err(QuicLbError::NonceLength {
                    expected: nonce_len,
                    actual: bad
                })
            );
        }
    }
}

fn any_config() -> impl Strategy<Value = LbConfig> {
    (0u8..=6, 1usize..=15, any::<Option<[u8; 16]>>()).prop_flat_map(|(id, sid_len, key)| {
        (4..=19 - sid_len).prop_map(move |nonce_len| {
            LbConfig::new(id, sid_len, nonce_len, key).expect("valid by construction")
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Arbitrary bytes never make a codec panic, and every error is one of
    /// the decoding errors.
    #[test]
    fn arbitrary_bytes_never_panic(config in any_config(), cid in vec(any::<u8>(), 0..=40)) {
        let codec = LbCodec::new(config).unwrap();
        for result in [codec.decode_server_id(&cid).map(|_| ()), codec.decode(&cid).map(|_| ())] {
            match result {
                Ok(()) => {}
                Err(QuicLbError::Unroutable
                    | QuicLbError::UnknownConfig { .. }
                    | QuicLbError::CidLength { .. }
                    | QuicLbError::EncodedLength { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {e:?}"),
            }
        }
    }

    /// Arbitrary encode inputs never panic either.
    #[test]
    fn arbitrary_encode_inputs_never_panic(
        config in any_config(),
        sid in vec(any::<u8>(), 0..=24),
        nonce in vec(any::<u8>(), 0..=24),
    ) {
        let codec = LbCodec::new(config).unwrap();
        let ok = sid.len() == config.server_id_len() && nonce.len() == config.nonce_len();
        prop_assert_eq!(codec.encode(&sid, &nonce).is_ok(), ok);
    }
}
