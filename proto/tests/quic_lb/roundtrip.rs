//! encode → decode is the identity for every valid configuration, and
//! decode → encode is the identity on every well-formed CID.

use proptest::collection::vec;
use proptest::prelude::*;
use quicmq_proto::quic_lb::{LbCodec, LbConfig};

use crate::codec;

/// A tiny deterministic generator for the exhaustive tests.
struct Lcg(u64);

impl Lcg {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (self.0 >> 56) as u8
            })
            .collect()
    }
}

/// Every (server ID length, nonce length) the draft allows, plaintext and
/// encrypted, with a few inputs each.
#[test]
fn every_length_combination_round_trips() {
    let mut rng = Lcg(0x5eed);
    let mut combinations = 0;
    for sid_len in 1..=15 {
        for nonce_len in 4..=19 - sid_len {
            for key in [None, Some(rng.bytes(16).try_into().unwrap())] {
                let config_id = (sid_len + nonce_len) as u8 % 7;
                let codec = codec(config_id, sid_len, nonce_len, key);
                for _ in 0..8 {
                    let (sid, nonce) = (rng.bytes(sid_len), rng.bytes(nonce_len));
                    let cid = codec.encode(&sid, &nonce).unwrap();
                    assert_eq!(cid.len(), 1 + sid_len + nonce_len);
                    assert_eq!(codec.decode_server_id(&cid).unwrap().as_bytes(), &sid[..]);
                    let (dsid, dnonce) = codec.decode(&cid).unwrap();
                    assert_eq!((dsid.as_bytes(), dnonce.as_bytes()), (&sid[..], &nonce[..]));
                    if key.is_some() {
                        // Encrypted: server ID and nonce are not in clear
                        // (a fluke of 2^-40 at most for 5 octets, and the
                        // generator is deterministic).
                        let clear = [&sid[..], &nonce[..]].concat();
                        assert_ne!(&cid[1..], &clear[..], "{sid_len}+{nonce_len}");
                    } else {
                        assert_eq!(&cid[1..1 + sid_len], &sid[..]);
                        assert_eq!(&cid[1 + sid_len..], &nonce[..]);
                    }
                }
                combinations += 1;
            }
        }
    }
    // 15 server ID lengths with 15, 14, ..., 1 nonce lengths, twice.
    assert_eq!(combinations, 2 * (1..=15).sum::<usize>());
}

/// A configuration with server ID and nonce of its lengths.
fn config_and_inputs() -> impl Strategy<Value = (LbConfig, Vec<u8>, Vec<u8>)> {
    (0u8..=6, 1usize..=15, any::<Option<[u8; 16]>>()).prop_flat_map(|(id, sid_len, key)| {
        (4..=19 - sid_len).prop_flat_map(move |nonce_len| {
            let config = LbConfig::new(id, sid_len, nonce_len, key).expect("valid");
            (
                Just(config),
                vec(any::<u8>(), sid_len),
                vec(any::<u8>(), nonce_len),
            )
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn encode_then_decode_is_identity((config, sid, nonce) in config_and_inputs()) {
        let codec = LbCodec::new(config).unwrap();
        let cid = codec.encode(&sid, &nonce).unwrap();
        prop_assert_eq!(cid.len(), config.cid_len());
        prop_assert_eq!(cid[0], config.first_octet());
        let decoded_sid = codec.decode_server_id(&cid).unwrap();
        prop_assert_eq!(decoded_sid.as_bytes(), &sid[..]);
        let (dsid, dnonce) = codec.decode(&cid).unwrap();
        prop_assert_eq!(dsid.as_bytes(), &sid[..]);
        prop_assert_eq!(dnonce.as_bytes(), &nonce[..]);
    }

    /// Any octets after a right first octet decode (the algorithms are
    /// permutations), re-encode to the same CID, and the three-pass
    /// shortcut of `decode_server_id` agrees with the full `decode`.
    #[test]
    fn decode_then_encode_is_identity(
        (config, body, _) in config_and_inputs().prop_flat_map(|(config, _, _)| {
            (Just(config), vec(any::<u8>(), config.cid_len() - 1), Just(()))
        }),
    ) {
        let codec = LbCodec::new(config).unwrap();
        let mut cid = vec![config.first_octet()];
        cid.extend_from_slice(&body);
        let sid = codec.decode_server_id(&cid).unwrap();
        let (full_sid, nonce) = codec.decode(&cid).unwrap();
        prop_assert_eq!(sid, full_sid);
        let again = codec.encode(&sid, &nonce).unwrap();
        prop_assert_eq!(again.as_bytes(), &cid[..]);
    }

    /// Two different nonces never give the same CID for one server ID.
    #[test]
    fn distinct_nonces_give_distinct_cids(
        (config, sid, nonce) in config_and_inputs(),
        flip in any::<prop::sample::Index>(),
    ) {
        let codec = LbCodec::new(config).unwrap();
        let mut other = nonce.clone();
        other[flip.index(nonce.len())] ^= 0x01;
        prop_assert_ne!(codec.encode(&sid, &nonce).unwrap(), codec.encode(&sid, &other).unwrap());
    }
}
