//! Property tests: encode → decode is the identity on valid packets, and
//! no input makes `decode` panic.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use quicmq_proto::mqtt::{decode, encode, ProtocolVersion, MAX_PACKET_SIZE};

use crate::strategies::{packet, version};

fn round_trip(
    version: ProtocolVersion,
) -> impl Strategy<Value = (ProtocolVersion, quicmq_proto::mqtt::Packet)> {
    packet(version).prop_map(move |p| (version, p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn encode_then_decode_is_identity(
        (version, packet) in prop_oneof![round_trip(ProtocolVersion::V311), round_trip(ProtocolVersion::V5)],
        split in any::<prop::sample::Index>(),
    ) {
        let mut wire = BytesMut::new();
        let n = encode(&packet, version, &mut wire).expect("valid packets encode");
        prop_assert_eq!(n, wire.len());

        // Any strict prefix is incomplete and consumes nothing.
        let cut = split.index(wire.len());
        let mut prefix = BytesMut::from(&wire[..cut]);
        prop_assert_eq!(decode(&mut prefix, version, MAX_PACKET_SIZE), Ok(None));
        prop_assert_eq!(prefix.len(), cut);

        // The whole packet, followed by the first bytes of another one.
        let mut buf = wire.clone();
        buf.extend_from_slice(&[0xC0]);
        let decoded = decode(&mut buf, version, n as u32);
        prop_assert_eq!(decoded, Ok(Some(packet.clone())));
        prop_assert_eq!(&buf[..], &[0xC0][..]);

        // One byte under the size limit is refused.
        let mut again = wire.clone();
        let too_large = decode(&mut again, version, n as u32 - 1);
        let is_too_large = matches!(
            too_large,
            Err(quicmq_proto::mqtt::DecodeError::PacketTooLarge { size, .. }) if size == n
        );
        prop_assert!(is_too_large);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..512),
        version in version(),
        max in prop_oneof![Just(MAX_PACKET_SIZE), 0u32..600],
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, version, max) {}
    }

    #[test]
    fn mutated_packets_never_panic_and_re_encode(
        packet in version().prop_flat_map(|v| packet(v).prop_map(move |p| (v, p))),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        truncate in any::<prop::sample::Index>(),
    ) {
        let (version, packet) = packet;
        let mut wire = BytesMut::new();
        encode(&packet, version, &mut wire).expect("valid packets encode");
        for (at, byte) in flips {
            let i = at.index(wire.len());
            wire[i] ^= byte;
        }
        let keep = wire.len() - truncate.index(wire.len()) / 4;
        wire.truncate(keep);
        let mut buf = wire.clone();
        while let Ok(Some(decoded)) = decode(&mut buf, version, MAX_PACKET_SIZE) {
            // Whatever the decoder accepts, the encoder can write again.
            let mut out = BytesMut::new();
            let v = match &decoded {
                quicmq_proto::mqtt::Packet::Connect(c) => c.protocol,
                _ => version,
            };
            prop_assert!(encode(&decoded, version, &mut out).is_ok(), "{:?}", decoded);
            if v == ProtocolVersion::V5 {
                let again = decode(&mut out, v, MAX_PACKET_SIZE);
                prop_assert_eq!(again, Ok(Some(decoded)));
            }
        }
    }
}
