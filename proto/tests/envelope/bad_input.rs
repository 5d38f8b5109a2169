//! Bytes that are not a valid envelope, and headers that cannot be
//! written: each gives one exact error; no input makes `parse` panic.

use proptest::collection::vec;
use proptest::prelude::*;
use quicmq_proto::envelope::{parse, prepend_header, write_header, EnvelopeError, ProxyHeader};

use crate::{with_sig, SIG};

fn v4() -> Vec<u8> {
    with_sig(&[
        0x21, 0x12, 0x00, 0x0c, 10, 0, 0, 1, 10, 0, 0, 2, 0x00, 0x50, 0x00, 0x51,
    ])
}

#[test]
fn not_proxy_v2() {
    assert_eq!(
        parse(b""),
        Err(EnvelopeError::Truncated {
            needed: 16,
            actual: 0
        })
    );
    assert_eq!(
        parse(b"\xc0\x00\x00\x00\x01"),
        Err(EnvelopeError::BadSignature)
    );
    assert_eq!(parse(&[0x40; 1200]), Err(EnvelopeError::BadSignature));
    // PROXY protocol v1 (text).
    assert_eq!(
        parse(b"PROXY UDP4 192.0.2.1 198.51.100.7 50000 14567\r\n"),
        Err(EnvelopeError::BadSignature)
    );
    let mut wire = v4();
    wire[11] = b'X';
    assert_eq!(parse(&wire), Err(EnvelopeError::BadSignature));
}

#[test]
fn truncated_headers() {
    let wire = v4();
    for cut in 0..16 {
        assert_eq!(
            parse(&wire[..cut]),
            Err(EnvelopeError::Truncated {
                needed: 16,
                actual: cut
            }),
            "cut at {cut}"
        );
    }
    for cut in 16..wire.len() {
        assert_eq!(
            parse(&wire[..cut]),
            Err(EnvelopeError::Truncated {
                needed: 28,
                actual: cut
            }),
            "cut at {cut}"
        );
    }
    // A length field far past the end.
    let wire = with_sig(&[0x21, 0x12, 0xff, 0xff, 0, 0, 0, 0]);
    assert_eq!(
        parse(&wire),
        Err(EnvelopeError::Truncated {
            needed: 16 + 0xffff,
            actual: 20
        })
    );
}

#[test]
fn version_and_command() {
    for version in (0..16u8).filter(|&v| v != 2) {
        let mut wire = v4();
        wire[12] = version << 4 | 0x1;
        assert_eq!(
            parse(&wire),
            Err(EnvelopeError::UnsupportedVersion(version))
        );
    }
    for command in 2..16u8 {
        let mut wire = v4();
        wire[12] = 0x20 | command;
        assert_eq!(
            parse(&wire),
            Err(EnvelopeError::UnsupportedCommand(command))
        );
    }
}

#[test]
fn families_other_than_udp_over_ip() {
    // UNSPEC, TCP4, TCP6, UNIX stream and dgram, and undefined values.
    for family in [
        0x00, 0x01, 0x02, 0x10, 0x11, 0x13, 0x20, 0x21, 0x31, 0x32, 0x42, 0xff,
    ] {
        let mut wire = v4();
        wire[13] = family;
        assert_eq!(
            parse(&wire),
            Err(EnvelopeError::UnsupportedFamily(family)),
            "{family:#04x}"
        );
    }
}

#[test]
fn length_shorter_than_the_addresses() {
    for len in 0..12u16 {
        let mut wire = v4();
        wire[14..16].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            parse(&wire),
            Err(EnvelopeError::AddressesTooShort {
                len: len.into(),
                needed: 12
            })
        );
    }
    // IPv6 needs 36: an IPv4-sized block is too short.
    let mut wire = v4();
    wire[13] = 0x22;
    assert_eq!(
        parse(&wire),
        Err(EnvelopeError::AddressesTooShort {
            len: 12,
            needed: 36
        })
    );
}

#[test]
fn malformed_tlvs() {
    // 1 and 2 octets after the addresses: not even a TLV header.
    for extra in [&[0x04][..], &[0x04, 0x00]] {
        let mut wire = v4();
        wire[14..16].copy_from_slice(&(12 + extra.len() as u16).to_be_bytes());
        wire.extend_from_slice(extra);
        assert_eq!(parse(&wire), Err(EnvelopeError::MalformedTlv(28)));
    }
    // A TLV whose value runs past the header length (but not past the
    // datagram, which goes on with the payload).
    let mut wire = v4();
    wire[14..16].copy_from_slice(&(12u16 + 3 + 2).to_be_bytes());
    wire.extend_from_slice(&[0x05, 0x00, 0x04, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
    assert_eq!(parse(&wire), Err(EnvelopeError::MalformedTlv(28)));
    // The second TLV is the broken one.
    let mut wire = v4();
    wire[14..16].copy_from_slice(&(12u16 + 4 + 4).to_be_bytes());
    wire.extend_from_slice(&[0x04, 0x00, 0x01, 0x00, 0x05, 0x00, 0x09, 0x00]);
    assert_eq!(parse(&wire), Err(EnvelopeError::MalformedTlv(32)));
}

#[test]
fn mixed_families_are_not_written() {
    let mixed = [
        ProxyHeader {
            source: "192.0.2.1:1".parse().unwrap(),
            destination: "[2001:db8::1]:2".parse().unwrap(),
        },
        ProxyHeader {
            source: "[::ffff:192.0.2.1]:1".parse().unwrap(),
            destination: "192.0.2.2:2".parse().unwrap(),
        },
    ];
    for header in mixed {
        let mut out = [0u8; 64];
        assert_eq!(
            write_header(&header, &mut out),
            Err(EnvelopeError::MixedFamilies)
        );
        assert_eq!(header.encode(), Err(EnvelopeError::MixedFamilies));
        assert_eq!(header.encoded_len(), Err(EnvelopeError::MixedFamilies));
        assert_eq!(
            prepend_header(&header, &mut out, 60),
            Err(EnvelopeError::MixedFamilies)
        );
        assert_eq!(out, [0u8; 64], "nothing written");
    }
}

#[test]
fn buffer_too_small() {
    let v4 = ProxyHeader {
        source: "192.0.2.1:1".parse().unwrap(),
        destination: "192.0.2.2:2".parse().unwrap(),
    };
    let v6 = ProxyHeader {
        source: "[2001:db8::1]:1".parse().unwrap(),
        destination: "[2001:db8::2]:2".parse().unwrap(),
    };
    let mut out = [0u8; 60];
    assert_eq!(
        write_header(&v4, &mut out[..27]),
        Err(EnvelopeError::BufferTooSmall {
            needed: 28,
            available: 27
        })
    );
    assert_eq!(
        write_header(&v6, &mut out[..51]),
        Err(EnvelopeError::BufferTooSmall {
            needed: 52,
            available: 51
        })
    );
    assert_eq!(
        prepend_header(&v6, &mut out, 40),
        Err(EnvelopeError::BufferTooSmall {
            needed: 52,
            available: 40
        })
    );
    assert_eq!(
        prepend_header(&v4, &mut out, 61),
        Err(EnvelopeError::BufferTooSmall {
            needed: 28,
            available: 60
        })
    );
    assert_eq!(out, [0u8; 60], "nothing written");
    assert_eq!(prepend_header(&v4, &mut out, 60), Ok(32));
    assert_eq!(prepend_header(&v4, &mut out, 28), Ok(0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Arbitrary bytes never make `parse` panic; an accepted header never
    /// puts the payload past the end of the datagram.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..128)) {
        if let Ok((_, offset)) = parse(&bytes) {
            prop_assert!(offset >= 16 && offset <= bytes.len());
        }
    }

    /// The same after a valid signature and version, to reach the deeper
    /// checks: command, family, length, addresses and TLVs.
    #[test]
    fn arbitrary_bytes_after_the_signature_never_panic(
        command in prop_oneof![Just(0x20u8), Just(0x21u8), any::<u8>()],
        family in prop_oneof![Just(0x12u8), Just(0x22u8), any::<u8>()],
        len in prop_oneof![0u16..64, any::<u16>()],
        rest in vec(any::<u8>(), 0..96),
    ) {
        let mut wire = SIG.to_vec();
        wire.push(command);
        wire.push(family);
        wire.extend_from_slice(&len.to_be_bytes());
        wire.extend_from_slice(&rest);
        if let Ok((header, offset)) = parse(&wire) {
            prop_assert_eq!(offset, 16 + usize::from(len));
            prop_assert!(offset <= wire.len());
            prop_assert_eq!(header.is_none(), command == 0x20);
        }
    }
}
