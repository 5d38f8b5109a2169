//! Where each datagram goes (sans-IO): the routing decision of the design
//! brief's datagram path, steps 2 to 5.

use quicmq_proto::envelope::MAX_HEADER_LEN;
use quicmq_proto::quic_lb::{LbCodec, LbConfig};
use quicmq_proto::token_trailer;

use std::net::SocketAddr;

use crate::affinity::HandshakeAffinity;
use crate::header::{parse, QuicHeader};
use crate::node_table::NodeTable;

/// Largest datagram that still fits a UDP payload once wrapped.
pub const MAX_DATAGRAM: usize = 65_507 - MAX_HEADER_LEN;

/// Why a datagram was dropped (also the metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not a QUIC packet header we can read.
    Unparseable,
    /// A connection ID longer than 20 octets.
    CidTooLong,
    /// A version negotiation packet (servers send those, not clients).
    VersionNegotiation,
    /// A routable connection ID of a server ID no node has.
    UnknownServerId,
    /// A long-header packet for a dead node (no reset for those).
    DeadNode,
    /// No node is alive.
    NoLiveNode,
    /// Too large to wrap in an envelope.
    Oversize,
    /// The router has no node table yet (waiting for the cluster's first
    /// snapshot).
    NoClusterState,
}

impl DropReason {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Unparseable => "unparseable",
            DropReason::CidTooLong => "cid_too_long",
            DropReason::VersionNegotiation => "version_negotiation",
            DropReason::UnknownServerId => "unknown_server_id",
            DropReason::DeadNode => "dead_node",
            DropReason::NoLiveNode => "no_live_node",
            DropReason::Oversize => "oversize",
            DropReason::NoClusterState => "no_cluster_state",
        }
    }
}

/// How a forwarded datagram's node was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The server ID in the DCID.
    ServerId,
    /// The server ID in an Initial's token.
    Token,
    /// The node an earlier token-steered Initial of the same client and
    /// DCID went to (its 0-RTT packets).
    Affinity,
    /// Rendezvous hashing of a client-chosen or unroutable DCID.
    Hash,
}

/// The decision for one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// Forward to the node at this index of the table.
    Forward {
        /// Node index.
        node: usize,
        /// How it was chosen.
        via: Via,
    },
    /// The DCID names a dead node: answer with a Stateless Reset for the
    /// first `cid_len` octets after the first (the DCID).
    Reset,
    /// Drop it.
    Drop(DropReason),
}

/// The routing decision, given the cluster's QUIC-LB configuration.
pub struct Steering {
    codec: LbCodec,
}

impl Steering {
    /// Steering under `codec`'s configuration.
    pub fn new(codec: LbCodec) -> Steering {
        Steering { codec }
    }

    /// The QUIC-LB configuration it decodes under.
    pub fn config(&self) -> &LbConfig {
        self.codec.config()
    }

    /// Length of the connection IDs nodes issue (short-header DCIDs).
    pub fn cid_len(&self) -> usize {
        self.codec.config().cid_len()
    }

    /// Decide where `datagram` goes.
    pub fn steer(&self, datagram: &[u8], table: &NodeTable) -> Steer {
        if datagram.len() > MAX_DATAGRAM {
            return Steer::Drop(DropReason::Oversize);
        }
        let header = match parse(datagram, self.cid_len()) {
            Ok(header) => header,
            Err(e) => {
                return Steer::Drop(match e {
                    crate::header::HeaderError::CidTooLong(_) => DropReason::CidTooLong,
                    crate::header::HeaderError::VersionNegotiation => {
                        DropReason::VersionNegotiation
                    }
                    _ => DropReason::Unparseable,
                })
            }
        };
        let dcid = header.dcid();
        if let Ok(server_id) = self.codec.decode_server_id(dcid) {
            return match table.by_server_id(&server_id) {
                Some((node, entry)) if entry.is_alive() => Steer::Forward {
                    node,
                    via: Via::ServerId,
                },
                Some(_) => match header {
                    QuicHeader::Short { .. } => Steer::Reset,
                    // An Initial's DCID is the client's choice: it names a
                    // dead node only by chance.
                    QuicHeader::Long { initial: true, .. } => self.unroutable(header, table),
                    QuicHeader::Long { .. } => Steer::Drop(DropReason::DeadNode),
                },
                // A client-chosen DCID (Initial, 0-RTT) may decode to a
                // server ID by chance: those fall back to the token and
                // the hash, as the draft asks for unroutable long headers.
                None if matches!(header, QuicHeader::Long { .. }) => self.unroutable(header, table),
                None => Steer::Drop(DropReason::UnknownServerId),
            };
        }
        self.unroutable(header, table)
    }

    /// A long header whose DCID names no node (a client's own choice), or
    /// any unroutable short header: the Initial's token, else the hash.
    fn unroutable(&self, header: QuicHeader<'_>, table: &NodeTable) -> Steer {
        let dcid = header.dcid();
        if let QuicHeader::Long {
            initial_token: Some(token),
            ..
        } = header
        {
            if let Some(server_id) = token_trailer::server_id_of(token) {
                if let Some((node, entry)) = table.by_server_id(&server_id) {
                    if entry.takes_new_connections() {
                        return Steer::Forward {
                            node,
                            via: Via::Token,
                        };
                    }
                }
            }
        }
        // Only nodes that take new connections: a client-chosen DCID
        // starts a handshake.
        match table.rendezvous(dcid) {
            Some(node) => Steer::Forward {
                node,
                via: Via::Hash,
            },
            None => Steer::Drop(DropReason::NoLiveNode),
        }
    }
}

impl Steering {
    /// [`steer`](Self::steer), keeping a returning client's handshake on
    /// one node: a token-steered Initial from `client` is remembered in
    /// `affinity`, and the long-header packets that follow it under the
    /// same DCID (0-RTT) go where it went instead of being hashed.
    pub fn steer_handshake(
        &self,
        datagram: &[u8],
        table: &NodeTable,
        client: SocketAddr,
        now_ms: u64,
        affinity: &mut HandshakeAffinity,
    ) -> Steer {
        let steer = self.steer(datagram, table);
        let Steer::Forward { node, via } = steer else {
            return steer;
        };
        let Ok(QuicHeader::Long { dcid, .. }) = parse(datagram, self.cid_len()) else {
            return steer;
        };
        match via {
            Via::Token => {
                if let Some(entry) = table.nodes().get(node) {
                    affinity.record(client, dcid, entry.server_id, now_ms);
                }
                steer
            }
            Via::Hash => affinity
                .lookup(client, dcid, now_ms)
                .and_then(|server_id| table.by_server_id(&server_id))
                .filter(|(_, entry)| entry.takes_new_connections())
                .map_or(steer, |(node, _)| Steer::Forward {
                    node,
                    via: Via::Affinity,
                }),
            Via::ServerId | Via::Affinity => steer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmq_proto::quic_lb::ServerId;
    use std::net::SocketAddr;

    fn setup() -> (Steering, NodeTable, LbCodec) {
        let config = LbConfig::new(0, 2, 6, Some([9; 16])).unwrap();
        let table = NodeTable::new(vec![
            (
                ServerId::new(&[0, 1]).unwrap(),
                "127.0.0.1:1001".parse().unwrap(),
            ),
            (
                ServerId::new(&[0, 2]).unwrap(),
                "127.0.0.1:1002".parse().unwrap(),
            ),
        ])
        .unwrap();
        for n in table.nodes() {
            n.set_alive(true);
        }
        (
            Steering::new(LbCodec::new(config).unwrap()),
            table,
            LbCodec::new(config).unwrap(),
        )
    }

    fn short(cid: &[u8]) -> Vec<u8> {
        let mut p = vec![0x41];
        p.extend_from_slice(cid);
        p.extend_from_slice(&[0u8; 40]);
        p
    }

    fn initial(dcid: &[u8], token: &[u8]) -> Vec<u8> {
        let mut p = vec![0xc0, 0, 0, 0, 1, dcid.len() as u8];
        p.extend_from_slice(dcid);
        p.push(0);
        p.push(token.len() as u8); // < 64: one-octet varint
        p.extend_from_slice(token);
        p.extend_from_slice(&[0u8; 1100]);
        p
    }

    #[test]
    fn routable_cids_go_to_their_node_and_dead_nodes_get_resets() {
        let (s, t, codec) = setup();
        let cid = codec.encode(&[0, 2], &[5; 6]).unwrap();
        assert_eq!(
            s.steer(&short(&cid), &t),
            Steer::Forward {
                node: 1,
                via: Via::ServerId
            }
        );
        t.nodes()[1].set_alive(false);
        assert_eq!(s.steer(&short(&cid), &t), Steer::Reset);
        let mut handshake = initial(&cid, &[]);
        handshake[0] = 0xe0; // Handshake: long header, no token
        assert_eq!(s.steer(&handshake, &t), Steer::Drop(DropReason::DeadNode));
        let stranger = codec.encode(&[0, 9], &[5; 6]).unwrap();
        assert_eq!(
            s.steer(&short(&stranger), &t),
            Steer::Drop(DropReason::UnknownServerId)
        );
        // A client may choose an Initial DCID that decodes to a server ID
        // (unknown or dead) by chance: it is hashed like any other.
        for dcid in [&stranger, &cid] {
            assert!(matches!(
                s.steer(&initial(dcid, &[]), &t),
                Steer::Forward {
                    node: 0,
                    via: Via::Hash
                }
            ));
        }
    }

    #[test]
    fn client_chosen_dcids_hash_consistently_and_tokens_steer_home() {
        let (s, t, _) = setup();
        let dcid = [0x77u8; 8];
        let first = s.steer(&initial(&dcid, &[]), &t);
        assert!(matches!(first, Steer::Forward { via: Via::Hash, .. }));
        let mut zero_rtt = initial(&dcid, &[]);
        zero_rtt[0] = 0xd0;
        match (first, s.steer(&zero_rtt, &t)) {
            (Steer::Forward { node: a, .. }, Steer::Forward { node: b, .. }) => {
                assert_eq!(a, b, "0-RTT follows its Initial")
            }
            other => panic!("{other:?}"),
        }
        // A token naming node 0x0002 steers the Initial there, whatever the hash says.
        let mut token = b"sealed-by-node-2".to_vec();
        token_trailer::append(&mut token, &ServerId::new(&[0, 2]).unwrap());
        token.extend_from_slice(&[1; 16]);
        for d in 0..20u8 {
            assert_eq!(
                s.steer(&initial(&[d; 8], &token), &t),
                Steer::Forward {
                    node: 1,
                    via: Via::Token
                }
            );
        }
        // ...unless that node is dead: then the hash decides.
        t.nodes()[1].set_alive(false);
        assert_eq!(
            s.steer(&initial(&[3; 8], &token), &t),
            Steer::Forward {
                node: 0,
                via: Via::Hash
            }
        );
        t.nodes()[0].set_alive(false);
        assert_eq!(
            s.steer(&initial(&[3; 8], &token), &t),
            Steer::Drop(DropReason::NoLiveNode)
        );
    }

    #[test]
    fn zero_rtt_packets_follow_a_token_steered_initial() {
        let (s, t, _) = setup();
        let mut token = b"sealed-by-node-2".to_vec();
        token_trailer::append(&mut token, &ServerId::new(&[0, 2]).unwrap());
        token.extend_from_slice(&[1; 16]);
        let client: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let mut affinity = HandshakeAffinity::new(16, 1_000);
        // DCIDs whose hash picks node 0, while the token names node 1.
        let dcids: Vec<[u8; 8]> = (0..40u8)
            .map(|d| [d; 8])
            .filter(|d| {
                let mut p = initial(d, &[]);
                p[0] = 0xd0;
                s.steer(&p, &t)
                    == Steer::Forward {
                        node: 0,
                        via: Via::Hash,
                    }
            })
            .collect();
        assert!(!dcids.is_empty());
        for (i, dcid) in dcids.iter().enumerate() {
            let t0 = i as u64 * 2_000;
            let mut zero_rtt = initial(dcid, &[]);
            zero_rtt[0] = 0xd0;
            assert_eq!(
                s.steer_handshake(&initial(dcid, &token), &t, client, t0, &mut affinity),
                Steer::Forward {
                    node: 1,
                    via: Via::Token
                }
            );
            assert_eq!(
                s.steer_handshake(&zero_rtt, &t, client, t0 + 10, &mut affinity),
                Steer::Forward {
                    node: 1,
                    via: Via::Affinity
                },
                "0-RTT of the same client and DCID"
            );
            let stranger: SocketAddr = "192.0.2.10:5000".parse().unwrap();
            assert_eq!(
                s.steer_handshake(&zero_rtt, &t, stranger, t0 + 10, &mut affinity),
                Steer::Forward {
                    node: 0,
                    via: Via::Hash
                },
                "another address is hashed"
            );
            assert_eq!(
                s.steer_handshake(&zero_rtt, &t, client, t0 + 1_000, &mut affinity),
                Steer::Forward {
                    node: 0,
                    via: Via::Hash
                },
                "forgotten after the TTL"
            );
        }
        // A node that stopped taking connections is not held to.
        let dcid = dcids[0];
        let t0 = dcids.len() as u64 * 2_000;
        let mut zero_rtt = initial(&dcid, &[]);
        zero_rtt[0] = 0xd0;
        s.steer_handshake(&initial(&dcid, &token), &t, client, t0, &mut affinity);
        t.nodes()[1].set_alive(false);
        assert_eq!(
            s.steer_handshake(&zero_rtt, &t, client, t0 + 10, &mut affinity),
            Steer::Forward {
                node: 0,
                via: Via::Hash
            }
        );
    }

    #[test]
    fn draining_nodes_keep_their_connections_and_gone_ones_get_resets() {
        use crate::node_table::{Admission, NodeSpec};
        let (s, _, codec) = setup();
        let spec = |sid: u8, admission| NodeSpec {
            server_id: ServerId::new(&[0, sid]).unwrap(),
            node_id: u64::from(sid),
            routed_addr: Some(SocketAddr::from(([127, 0, 0, 1], 1000 + u16::from(sid)))),
            admission,
        };
        let t = NodeTable::from_specs(
            vec![
                spec(1, Admission::Active),
                spec(2, Admission::Draining),
                spec(3, Admission::Gone),
            ],
            None,
        )
        .unwrap();
        t.nodes()[0].set_alive(true);
        t.nodes()[1].set_alive(true);
        let draining = codec.encode(&[0, 2], &[5; 6]).unwrap();
        assert_eq!(
            s.steer(&short(&draining), &t),
            Steer::Forward {
                node: 1,
                via: Via::ServerId
            }
        );
        let gone = codec.encode(&[0, 3], &[5; 6]).unwrap();
        assert_eq!(s.steer(&short(&gone), &t), Steer::Reset);
        let mut token = b"sealed-by-node-2".to_vec();
        token_trailer::append(&mut token, &ServerId::new(&[0, 2]).unwrap());
        token.extend_from_slice(&[1; 16]);
        for d in 0..20u8 {
            assert_eq!(
                s.steer(&initial(&[d; 8], &token), &t),
                Steer::Forward {
                    node: 0,
                    via: Via::Hash
                },
                "new handshakes avoid a draining node"
            );
        }
    }

    #[test]
    fn malformed_datagrams_are_dropped_with_a_reason() {
        let (s, t, _) = setup();
        assert_eq!(s.steer(&[], &t), Steer::Drop(DropReason::Unparseable));
        assert_eq!(
            s.steer(&[0x40, 1, 2], &t),
            Steer::Drop(DropReason::Unparseable)
        );
        let mut long_cid = vec![0xc0, 0, 0, 0, 1, 21];
        long_cid.extend_from_slice(&[0; 30]);
        assert_eq!(s.steer(&long_cid, &t), Steer::Drop(DropReason::CidTooLong));
        assert_eq!(
            s.steer(&vec![0x40; MAX_DATAGRAM + 1], &t),
            Steer::Drop(DropReason::Oversize)
        );
    }
}
