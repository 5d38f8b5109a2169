//! Fuzz harnesses: one function per parser of untrusted input, shared by
//! the `cargo fuzz` targets in `fuzz/` and by the corpus replay that
//! `cargo test` runs (`tests/tests/e2e/fuzz_corpus.rs`).
//!
//! Each harness must return for every input without panicking. Where a
//! parser accepts an input, the harness also checks what must hold of the
//! result (a decoded MQTT packet encodes back to an equal packet, a
//! decoded header stays inside the datagram, ...), and panics if it does
//! not: to the fuzzer that is a finding like a crash.

use bytes::BytesMut;
use quicmq_proto::envelope;
use quicmq_proto::mqtt::{decode, encode, ProtocolVersion};
use quicmq_proto::quic_lb::{LbCodec, LbConfig};

/// A harness: takes any bytes, panics only on a finding.
pub type Harness = fn(&[u8]);

/// The targets, by name (`cargo fuzz run NAME`, and `fuzz/seeds/NAME/`).
pub const TARGETS: [(&str, Harness); 5] = [
    ("mqtt_decoder", mqtt_decoder),
    ("quic_lb_decoder", quic_lb_decoder),
    ("proxy_v2", proxy_v2),
    ("router_header", router_header),
    ("node_config", node_config),
];

/// The MQTT decoder on a stream of packets. The first byte picks the
/// protocol version (bit 0) and whether the stream is fed whole or a byte
/// at a time (bit 1). Every packet decoded must encode, and the encoding
/// must decode to the same packet.
pub fn mqtt_decoder(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let version = if selector & 1 == 0 {
        ProtocolVersion::V311
    } else {
        ProtocolVersion::V5
    };
    let trickle = selector & 2 != 0;
    let mut buf = BytesMut::new();
    let mut fed = 0;
    loop {
        if trickle && fed < stream.len() {
            buf.extend_from_slice(&stream[fed..fed + 1]);
            fed += 1;
        } else if fed < stream.len() {
            buf.extend_from_slice(&stream[fed..]);
            fed = stream.len();
        }
        match decode(&mut buf, version, 1 << 20) {
            Ok(Some(packet)) => {
                let mut out = BytesMut::new();
                if encode(&packet, version, &mut out).is_ok() {
                    let again = decode(&mut out, version, u32::MAX);
                    assert_eq!(again, Ok(Some(packet)), "decode → encode → decode");
                }
            }
            Ok(None) if fed < stream.len() => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// One QUIC-LB codec per algorithm and config ID (lengths from the
/// draft's ranges), built once.
fn lb_codecs() -> &'static [LbCodec] {
    static CODECS: std::sync::OnceLock<Vec<LbCodec>> = std::sync::OnceLock::new();
    CODECS.get_or_init(|| {
        [
            (0, 3, 4, None),
            (1, 5, 5, None),
            (2, 8, 8, Some([0x11; 16])),
            (3, 3, 4, Some([0x22; 16])),
            (4, 10, 5, Some([0x33; 16])),
            (5, 9, 9, Some([0x44; 16])),
            (6, 1, 18, Some([0x55; 16])),
        ]
        .into_iter()
        .filter_map(|(id, sid, nonce, key)| {
            LbConfig::new(id, sid, nonce, key)
                .ok()
                .and_then(|c| LbCodec::new(c).ok())
        })
        .collect()
    })
}

/// The QUIC-LB decoder: the first byte picks a codec, the rest is the
/// connection ID. Both decoding entry points must agree, and a decoded
/// server ID must have the configured length.
pub fn quic_lb_decoder(data: &[u8]) {
    let codecs = lb_codecs();
    let Some((&selector, cid)) = data.split_first() else {
        return;
    };
    let Some(codec) = codecs.get(usize::from(selector) % codecs.len().max(1)) else {
        return;
    };
    let server_id = codec.decode_server_id(cid);
    let both = codec.decode(cid);
    match (&server_id, &both) {
        (Ok(a), Ok((b, _))) => {
            assert_eq!(a, b, "decode_server_id and decode disagree");
            assert_eq!(a.as_bytes().len(), codec.config().server_id_len());
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "different errors for one CID"),
        _ => panic!("one decoder accepted what the other refused: {server_id:?} {both:?}"),
    }
}

/// The PROXY v2 envelope parser (router → node datagrams): the payload
/// offset it returns lies inside the datagram.
pub fn proxy_v2(data: &[u8]) {
    if let Ok((_, offset)) = envelope::parse(data) {
        assert!(offset <= data.len(), "payload offset past the datagram");
    }
}

/// The router's QUIC header parser: the first byte picks the short-header
/// CID length (0 to 20), the rest is the datagram; a parsed DCID lies
/// inside the datagram, with the expected length for short headers.
pub fn router_header(data: &[u8]) {
    let Some((&selector, datagram)) = data.split_first() else {
        return;
    };
    let short_cid_len = usize::from(selector % 21);
    if let Ok(header) = quicmq_router::header::parse(datagram, short_cid_len) {
        let dcid = header.dcid();
        assert!(dcid.len() <= 20, "a DCID longer than QUIC allows");
        let inside = datagram.as_ptr_range().contains(&dcid.as_ptr()) || dcid.is_empty();
        assert!(inside, "the DCID is not a slice of the datagram");
        if matches!(header, quicmq_router::header::QuicHeader::Short { .. }) {
            assert_eq!(dcid.len(), short_cid_len);
        }
    }
}

/// The node's configuration file (TOML) and its validation: errors, never
/// panics.
pub fn node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = toml::from_str::<quicmq_node::config::Overrides>(text) {
        let _ = quicmq_node::config::NodeConfig::resolve(
            quicmq_node::config::Overrides::default(),
            file,
        );
    }
}
