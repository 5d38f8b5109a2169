//! write → parse is the identity on IPv4 and IPv6 addresses, whatever
//! payload follows; every strict prefix of a header is truncated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;
use quicmq_proto::envelope::{
    parse, prepend_header, write_header, EnvelopeError, ProxyHeader, MAX_HEADER_LEN,
};

fn v4_header() -> impl Strategy<Value = ProxyHeader> {
    (
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<[u8; 4]>(),
        any::<u16>(),
    )
        .prop_map(|(s, sp, d, dp)| ProxyHeader {
            source: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(s)), sp),
            destination: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(d)), dp),
        })
}

fn v6_header() -> impl Strategy<Value = ProxyHeader> {
    (
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<[u8; 16]>(),
        any::<u16>(),
    )
        .prop_map(|(s, sp, d, dp)| ProxyHeader {
            source: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(s)), sp),
            destination: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(d)), dp),
        })
}

fn header() -> impl Strategy<Value = ProxyHeader> {
    prop_oneof![v4_header(), v6_header()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn write_then_parse_is_identity(header in header(), payload in vec(any::<u8>(), 0..1500)) {
        let mut wire = vec![0u8; MAX_HEADER_LEN + payload.len()];
        let n = write_header(&header, &mut wire).unwrap();
        prop_assert_eq!(Ok(n), header.encoded_len());
        prop_assert_eq!(&header.encode().unwrap()[..], &wire[..n]);
        wire.truncate(n);
        wire.extend_from_slice(&payload);

        let (parsed, offset) = parse(&wire).unwrap();
        prop_assert_eq!(parsed, Some(header));
        prop_assert_eq!(offset, n);
        prop_assert_eq!(&wire[offset..], &payload[..]);
    }

    #[test]
    fn prepend_then_parse_is_identity(header in header(), payload in vec(any::<u8>(), 0..1500)) {
        let mut buf = vec![0u8; MAX_HEADER_LEN + payload.len()];
        buf[MAX_HEADER_LEN..].copy_from_slice(&payload);
        let start = prepend_header(&header, &mut buf, MAX_HEADER_LEN).unwrap();
        prop_assert_eq!(&buf[MAX_HEADER_LEN..], &payload[..], "payload untouched");

        let (parsed, offset) = parse(&buf[start..]).unwrap();
        prop_assert_eq!(parsed, Some(header));
        prop_assert_eq!(start + offset, MAX_HEADER_LEN);
    }

    #[test]
    fn every_strict_prefix_is_truncated(header in header()) {
        let encoded = header.encode().unwrap();
        for cut in 0..encoded.len() {
            let needed = if cut < 16 { 16 } else { encoded.len() };
            prop_assert_eq!(
                parse(&encoded[..cut]),
                Err(EnvelopeError::Truncated { needed, actual: cut })
            );
        }
    }
}
