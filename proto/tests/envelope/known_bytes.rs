//! Headers written octet by octet from HAProxy's PROXY protocol spec §2.2,
//! parsed and written.

use std::net::SocketAddr;

use quicmq_proto::envelope::{
    parse, write_header, ProxyHeader, LOCAL_HEADER, MAX_HEADER_LEN, SIGNATURE, V4_HEADER_LEN,
    V6_HEADER_LEN,
};

use crate::{with_sig, SIG};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// 192.0.2.1:50000 → 198.51.100.7:14567 over UDP.
fn v4_wire() -> Vec<u8> {
    with_sig(&[
        0x21, // version 2, command PROXY
        0x12, // AF_INET, SOCK_DGRAM
        0x00, 0x0c, // 12 octets of addresses follow
        192, 0, 2, 1, // source address
        198, 51, 100, 7, // destination address
        0xc3, 0x50, // source port 50000
        0x38, 0xe7, // destination port 14567
    ])
}

/// [2001:db8::1]:443 → [2001:db8:0:0:0:0:0:ff02]:14568 over UDP.
fn v6_wire() -> Vec<u8> {
    with_sig(&[
        0x21, // version 2, command PROXY
        0x22, // AF_INET6, SOCK_DGRAM
        0x00, 0x24, // 36 octets of addresses follow
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // source
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x02, // destination
        0x01, 0xbb, // source port 443
        0x38, 0xe8, // destination port 14568
    ])
}

#[test]
fn signature_is_the_spec_s() {
    assert_eq!(SIGNATURE, SIG);
    assert_eq!(&SIGNATURE, b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!((V4_HEADER_LEN, V6_HEADER_LEN, MAX_HEADER_LEN), (28, 52, 52));
}

#[test]
fn ipv4_dgram() {
    let header = ProxyHeader {
        source: addr("192.0.2.1:50000"),
        destination: addr("198.51.100.7:14567"),
    };
    let mut wire = v4_wire();
    assert_eq!(wire.len(), 28);

    let mut out = [0xaa; 64];
    assert_eq!(write_header(&header, &mut out), Ok(28));
    assert_eq!(&out[..28], &wire[..]);
    assert_eq!(out[28], 0xaa, "nothing written past the header");
    assert_eq!(&header.encode().unwrap()[..], &wire[..]);

    assert_eq!(parse(&wire), Ok((Some(header), 28)));
    wire.extend_from_slice(b"\x40\x01\x02\x03");
    assert_eq!(parse(&wire), Ok((Some(header), 28)));
}

#[test]
fn ipv6_dgram() {
    let header = ProxyHeader {
        source: addr("[2001:db8::1]:443"),
        destination: addr("[2001:db8::ff02]:14568"),
    };
    let mut wire = v6_wire();
    assert_eq!(wire.len(), 52);

    let mut out = [0u8; 52];
    assert_eq!(write_header(&header, &mut out), Ok(52));
    assert_eq!(&out[..], &wire[..]);
    assert_eq!(&header.encode().unwrap()[..], &wire[..]);

    wire.extend_from_slice(&[0xc3; 1200]);
    assert_eq!(parse(&wire), Ok((Some(header), 52)));
}

#[test]
fn tlvs_after_the_addresses_are_skipped() {
    // Same addresses as `ipv4_dgram`, with the length covering two TLVs:
    // PP2_TYPE_NOOP (0x04) with 3 octets of padding, and PP2_TYPE_UNIQUE_ID
    // (0x05) with 4 octets.
    let mut wire = v4_wire();
    wire[14..16].copy_from_slice(&(12u16 + 6 + 7).to_be_bytes());
    wire.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0]);
    wire.extend_from_slice(&[0x05, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]);
    let header_len = wire.len();
    wire.extend_from_slice(b"\xc0payload");

    let (header, offset) = parse(&wire).unwrap();
    assert_eq!(offset, header_len);
    assert_eq!(&wire[offset..], b"\xc0payload");
    assert_eq!(
        header,
        Some(ProxyHeader {
            source: addr("192.0.2.1:50000"),
            destination: addr("198.51.100.7:14567"),
        })
    );

    // An empty TLV (length 0) is whole too.
    let mut wire = v6_wire();
    wire[14..16].copy_from_slice(&(36u16 + 3).to_be_bytes());
    wire.extend_from_slice(&[0xe0, 0x00, 0x00]);
    assert_eq!(parse(&wire).unwrap().1, 55);
}

#[test]
fn local_command() {
    assert_eq!(
        LOCAL_HEADER.to_vec(),
        with_sig(&[0x20, 0x00, 0x00, 0x00]),
        "version 2, LOCAL, AF_UNSPEC, length 0"
    );
    assert_eq!(parse(&LOCAL_HEADER), Ok((None, 16)));

    // LOCAL with a family and addresses: both ignored, the block skipped.
    let mut wire = v4_wire();
    wire[12] = 0x20;
    wire.extend_from_slice(b"payload");
    assert_eq!(parse(&wire), Ok((None, 28)));

    // LOCAL ignores even a family it would not accept with PROXY.
    let wire = with_sig(&[0x20, 0x31, 0x00, 0x02, 0xaa, 0xbb, 0xcc]);
    assert_eq!(parse(&wire), Ok((None, 18)));
}
