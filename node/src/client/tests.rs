//! End-to-end tests of the async shell against a small scripted MQTT
//! server on loopback (TCP, TLS and QUIC). The protocol logic itself is
//! tested without sockets next to each sans-IO piece.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quicmq_proto::mqtt::{
    decode, encode, ConnAck, Disconnect, Packet, Properties, ProtocolVersion, Publish,
    PublishResponse, QoS, ReasonCode, SubAck, SubscriptionOptions, UnsubAck, MAX_PACKET_SIZE,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

/// How the scripted server behaves.
#[derive(Clone)]
struct Script {
    connack: ConnAck,
    answer_pings: bool,
    /// Packets sent right after each SUBACK.
    after_suback: Vec<Packet>,
    /// Delay before acknowledging a QoS 1 publish.
    ack_delay: Duration,
    pings: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    disconnects: Arc<std::sync::Mutex<Vec<ReasonCode>>>,
}

impl Script {
    fn new() -> Script {
        Script {
            connack: ConnAck {
                session_present: false,
                reason_code: ReasonCode::SUCCESS,
                properties: Properties::default(),
            },
            answer_pings: true,
            after_suback: Vec::new(),
            ack_delay: Duration::ZERO,
            pings: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            disconnects: Arc::default(),
        }
    }
}

fn matches(filter: &str, topic: &str) -> bool {
    filter == "#"
        || filter == topic
        || filter
            .strip_suffix("/#")
            .is_some_and(|prefix| topic == prefix || topic.starts_with(&format!("{prefix}/")))
}

fn ack(packet_id: u16) -> PublishResponse {
    PublishResponse::success(packet_id)
}

async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    version: ProtocolVersion,
) -> Option<Packet> {
    loop {
        if let Some(packet) = decode(buf, version, MAX_PACKET_SIZE).ok()? {
            return Some(packet);
        }
        buf.reserve(4096);
        if r.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(
    mut w: W,
    version: ProtocolVersion,
) -> mpsc::UnboundedSender<Packet> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Packet>();
    tokio::spawn(async move {
        while let Some(packet) = rx.recv().await {
            let mut out = BytesMut::new();
            encode(&packet, version, &mut out).unwrap();
            if w.write_all(&out).await.is_err() || w.flush().await.is_err() {
                return;
            }
            if matches!(packet, Packet::Disconnect(_)) {
                let _ = w.shutdown().await;
                return;
            }
        }
    });
    tx
}

/// Serves one stream after CONNECT: acknowledges, echoes publishes to
/// matching subscriptions of the same stream, answers pings.
async fn serve_stream<R: AsyncRead + Unpin>(
    mut r: R,
    mut buf: BytesMut,
    tx: mpsc::UnboundedSender<Packet>,
    version: ProtocolVersion,
    script: Script,
) {
    let mut subscriptions: Vec<(String, QoS)> = Vec::new();
    let mut next_id: u16 = 0;
    while let Some(packet) = read_packet(&mut r, &mut buf, version).await {
        match packet {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        let now = script.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        script.max_in_flight.fetch_max(now, Ordering::SeqCst);
                        let tx = tx.clone();
                        let delay = script.ack_delay;
                        let in_flight = script.in_flight.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            let _ = tx.send(Packet::PubAck(ack(id)));
                        });
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        let _ = tx.send(Packet::PubRec(ack(id)));
                    }
                    _ => {}
                }
                for (filter, qos) in &subscriptions {
                    if !matches(filter, &p.topic) {
                        continue;
                    }
                    let qos = p.qos.min(*qos);
                    let packet_id = (qos != QoS::AtMostOnce).then(|| {
                        next_id = next_id.wrapping_add(1).max(1);
                        next_id
                    });
                    let _ = tx.send(Packet::Publish(Publish {
                        dup: false,
                        qos,
                        retain: false,
                        topic: p.topic.clone(),
                        packet_id,
                        properties: Properties::default(),
                        payload: p.payload.clone(),
                    }));
                }
            }
            Packet::PubRel(rel) => {
                let _ = tx.send(Packet::PubComp(ack(rel.packet_id)));
            }
            Packet::PubRec(rec) => {
                let _ = tx.send(Packet::PubRel(ack(rec.packet_id)));
            }
            Packet::PubAck(_) | Packet::PubComp(_) => {}
            Packet::Subscribe(s) => {
                let reason_codes = s
                    .filters
                    .iter()
                    .map(|(_, opts)| ReasonCode(opts.qos as u8))
                    .collect();
                subscriptions.extend(s.filters.iter().map(|(f, o)| (f.clone(), o.qos)));
                let _ = tx.send(Packet::SubAck(SubAck {
                    packet_id: s.packet_id,
                    reason_codes,
                    properties: Properties::default(),
                }));
                for packet in &script.after_suback {
                    let _ = tx.send(packet.clone());
                }
            }
            Packet::Unsubscribe(u) => {
                subscriptions.retain(|(f, _)| !u.filters.contains(f));
                let _ = tx.send(Packet::UnsubAck(UnsubAck {
                    packet_id: u.packet_id,
                    reason_codes: vec![ReasonCode::SUCCESS; u.filters.len()],
                    properties: Properties::default(),
                }));
            }
            Packet::PingReq => {
                script.pings.fetch_add(1, Ordering::SeqCst);
                if script.answer_pings {
                    let _ = tx.send(Packet::PingResp);
                }
            }
            Packet::Disconnect(d) => {
                script.disconnects.lock().unwrap().push(d.reason_code);
                return;
            }
            _ => return,
        }
    }
}

/// Reads CONNECT, answers the scripted CONNACK; the protocol version and
/// leftover bytes when the connection is accepted.
async fn handshake<R: AsyncRead + Unpin>(
    r: &mut R,
    tx: &mpsc::UnboundedSender<Packet>,
    script: &Script,
) -> Option<(ProtocolVersion, BytesMut)> {
    let mut buf = BytesMut::new();
    let Some(Packet::Connect(connect)) = read_packet(r, &mut buf, ProtocolVersion::V5).await else {
        return None;
    };
    let _ = tx.send(Packet::ConnAck(script.connack.clone()));
    (!script.connack.reason_code.is_error()).then_some((connect.protocol, buf))
}

async fn tcp_server(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let (mut r, w) = tcp.into_split();
                // The writer encodes CONNACK with the version of CONNECT;
                // peek at it first.
                let mut buf = BytesMut::new();
                let Some(Packet::Connect(connect)) =
                    read_packet(&mut r, &mut buf, ProtocolVersion::V5).await
                else {
                    return;
                };
                let tx = spawn_writer(w, connect.protocol);
                let _ = tx.send(Packet::ConnAck(script.connack.clone()));
                if !script.connack.reason_code.is_error() {
                    serve_stream(r, buf, tx, connect.protocol, script).await;
                }
            });
        }
    });
    addr
}

struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    pem: String,
}

fn cert() -> Cert {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    Cert {
        der: generated.cert.der().clone(),
        key: generated.signing_key.serialize_der(),
        pem: generated.cert.pem(),
    }
}

fn server_tls(cert: &Cert, alpn: bool) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der.clone()],
            PrivateKeyDer::Pkcs8(cert.key.clone().into()),
        )
        .unwrap();
    if alpn {
        config.alpn_protocols = vec![b"mqtt".to_vec()];
    }
    config
}

async fn tls_server(script: Script, cert: &Cert) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(cert, false)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let script = script.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut r, w) = tokio::io::split(stream);
                let tx = spawn_writer(w, ProtocolVersion::V5);
                if let Some((version, buf)) = handshake(&mut r, &tx, &script).await {
                    serve_stream(r, buf, tx, version, script).await;
                }
            });
        }
    });
    addr
}

async fn quic_server(script: Script, cert: &Cert) -> (SocketAddr, Arc<AtomicUsize>) {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls(cert, true)).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let data_streams = Arc::new(AtomicUsize::new(0));
    let streams = data_streams.clone();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let script = script.clone();
            let streams = streams.clone();
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                let Ok((send, mut recv)) = connection.accept_bi().await else {
                    return;
                };
                let tx = spawn_writer(send, ProtocolVersion::V5);
                let Some((version, buf)) = handshake(&mut recv, &tx, &script).await else {
                    return;
                };
                let control = tokio::spawn(serve_stream(recv, buf, tx, version, script.clone()));
                let accept = async {
                    while let Ok((send, recv)) = connection.accept_bi().await {
                        streams.fetch_add(1, Ordering::SeqCst);
                        let tx = spawn_writer(send, version);
                        tokio::spawn(serve_stream(
                            recv,
                            BytesMut::new(),
                            tx,
                            version,
                            script.clone(),
                        ));
                    }
                };
                tokio::select! {
                    _ = control => connection.close(0u32.into(), b"bye"),
                    _ = accept => {}
                }
            });
        }
    });
    (addr, data_streams)
}

fn tcp_opts(addr: SocketAddr) -> ClientOptions {
    let mut opts = ClientOptions::new(addr.ip().to_string(), addr.port(), Transport::Tcp);
    opts.connect_timeout = WAIT;
    opts
}

async fn next_publish(client: &Client) -> Publish {
    match tokio::time::timeout(WAIT, client.recv()).await {
        Ok(Some(Event::Publish(p))) => p,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn sub(filter: &str, qos: QoS) -> Vec<(String, SubscriptionOptions)> {
    vec![(filter.to_owned(), SubscriptionOptions::new(qos))]
}

#[tokio::test]
async fn tcp_publish_subscribe_all_qos_levels() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let addr = tcp_server(Script::new()).await;
        let mut opts = tcp_opts(addr);
        opts.protocol = version;
        let (client, connack) = Client::connect(opts).await.unwrap();
        assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
        assert_eq!(client.protocol(), version);
        assert!(client.quic_connection().is_none());
        assert!(client.local_addr().is_some());

        let suback = client
            .subscribe(sub("t/#", QoS::ExactlyOnce), Properties::default())
            .await
            .unwrap();
        assert_eq!(suback.reason_codes, vec![ReasonCode::GRANTED_QOS_2]);

        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let payload = format!("m{}", qos as u8);
            let reason = client
                .publish("t/a", payload.clone(), qos, false)
                .await
                .unwrap();
            assert_eq!(reason, ReasonCode::SUCCESS);
            let message = next_publish(&client).await;
            assert_eq!(message.topic, "t/a");
            assert_eq!(message.qos, qos);
            assert_eq!(message.payload, Bytes::from(payload));
        }
        assert_eq!(client.publishes_in_flight(), 0);

        client.unsubscribe(vec!["t/#".into()]).await.unwrap();
        client
            .publish("t/a", "after", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert!(client.ping().await.unwrap() < WAIT);

        client
            .disconnect(ReasonCode::NORMAL_DISCONNECTION)
            .await
            .unwrap();
        assert!(client.is_closed());
        // The unsubscribed message never arrives: the next event is Closed.
        assert_eq!(client.recv().await, Some(Event::Closed(None)));
        assert_eq!(client.recv().await, None);
        assert!(matches!(
            client.publish("t/a", "x", QoS::AtMostOnce, false).await,
            Err(ClientError::Closed(None))
        ));
        assert!(matches!(
            client.open_stream().await,
            Err(ClientError::Unsupported(_))
        ));
        assert!(matches!(
            client.rebind().await,
            Err(ClientError::Unsupported(_))
        ));
    }
}

#[tokio::test]
async fn refused_connection_reports_the_connack() {
    let mut script = Script::new();
    script.connack.reason_code = ReasonCode::NOT_AUTHORIZED;
    let addr = tcp_server(script).await;
    match Client::connect(tcp_opts(addr)).await {
        Err(ClientError::Refused(connack)) => {
            assert_eq!(connack.reason_code, ReasonCode::NOT_AUTHORIZED)
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    // MQTT 3.1.1 return codes map to reason codes too.
    let mut script = Script::new();
    script.connack.reason_code = ReasonCode::BAD_USER_NAME_OR_PASSWORD;
    let addr = tcp_server(script).await;
    let mut opts = tcp_opts(addr);
    opts.protocol = ProtocolVersion::V311;
    let err = Client::connect(opts).await.unwrap_err();
    assert_eq!(
        err.connack().map(|c| c.reason_code),
        Some(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    );
}

#[tokio::test]
async fn connect_times_out_against_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let mut opts = tcp_opts(addr);
    opts.connect_timeout = Duration::from_millis(200);
    assert!(matches!(
        Client::connect(opts).await,
        Err(ClientError::Timeout("connect"))
    ));
}

#[tokio::test]
async fn receive_maximum_bounds_publishes_in_flight() {
    let mut script = Script::new();
    script.connack.properties.receive_maximum = Some(2);
    script.ack_delay = Duration::from_millis(30);
    let max_seen = script.max_in_flight.clone();
    let addr = tcp_server(script).await;
    let (client, _) = Client::connect(tcp_opts(addr)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .publish("q", format!("{i}"), QoS::AtLeastOnce, false)
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), ReasonCode::SUCCESS);
    }
    assert_eq!(max_seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn maximum_packet_size_of_the_server_is_enforced() {
    let mut script = Script::new();
    script.connack.properties.maximum_packet_size = Some(64);
    let addr = tcp_server(script).await;
    let (client, _) = Client::connect(tcp_opts(addr)).await.unwrap();
    let err = client
        .publish("big", vec![0u8; 100], QoS::AtLeastOnce, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::PacketTooLarge { max: 64, .. }),
        "{err}"
    );
    // The refused publish released its packet id and quota.
    assert_eq!(client.publishes_in_flight(), 0);
    client
        .publish("small", "ok", QoS::AtLeastOnce, false)
        .await
        .unwrap();
}

fn aliased(topic: &str, alias: u16, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic.into(),
        packet_id: None,
        properties: Properties {
            topic_alias: Some(alias),
            ..Properties::default()
        },
        payload: Bytes::from_static(payload),
    })
}

#[tokio::test]
async fn server_topic_aliases_are_resolved() {
    let mut script = Script::new();
    script.after_suback = vec![aliased("long/topic", 3, b"one"), aliased("", 3, b"two")];
    let addr = tcp_server(script).await;
    let mut opts = tcp_opts(addr);
    opts.topic_alias_maximum = Some(5);
    let (client, _) = Client::connect(opts).await.unwrap();
    client
        .subscribe(sub("x", QoS::AtMostOnce), Properties::default())
        .await
        .unwrap();
    let one = next_publish(&client).await;
    let two = next_publish(&client).await;
    assert_eq!(
        (one.topic.as_str(), &one.payload[..]),
        ("long/topic", &b"one"[..])
    );
    assert_eq!(
        (two.topic.as_str(), &two.payload[..]),
        ("long/topic", &b"two"[..])
    );
}

#[tokio::test]
async fn invalid_topic_alias_closes_the_connection() {
    let mut script = Script::new();
    script.after_suback = vec![aliased("t", 9, b"x")];
    let disconnects = script.disconnects.clone();
    let addr = tcp_server(script).await;
    let mut opts = tcp_opts(addr);
    opts.topic_alias_maximum = Some(5);
    let (client, _) = Client::connect(opts).await.unwrap();
    client
        .subscribe(sub("x", QoS::AtMostOnce), Properties::default())
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, client.recv()).await {
        Ok(Some(Event::Closed(Some(reason)))) => {
            assert!(reason.contains("topic alias"), "{reason}")
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    // The client told the server why before closing.
    for _ in 0..100 {
        if !disconnects.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *disconnects.lock().unwrap(),
        vec![ReasonCode::TOPIC_ALIAS_INVALID]
    );
}

#[tokio::test]
async fn server_disconnect_is_an_event_then_closed() {
    let mut script = Script::new();
    script.after_suback = vec![Packet::Disconnect(Disconnect::new(
        ReasonCode::SESSION_TAKEN_OVER,
    ))];
    let addr = tcp_server(script).await;
    let (client, _) = Client::connect(tcp_opts(addr)).await.unwrap();
    client
        .subscribe(sub("x", QoS::AtMostOnce), Properties::default())
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, client.recv()).await {
        Ok(Some(Event::Disconnect(d))) => assert_eq!(d.reason_code, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("expected Disconnect, got {other:?}"),
    }
    match client.recv().await {
        Some(Event::Closed(Some(reason))) => assert!(reason.contains("Session taken over")),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(matches!(
        client.ping().await,
        Err(ClientError::Closed(Some(_)))
    ));
}

#[tokio::test]
async fn keep_alive_pings_and_times_out_without_pingresp() {
    let script = Script::new();
    let pings = script.pings.clone();
    let addr = tcp_server(script).await;
    let mut opts = tcp_opts(addr);
    opts.keep_alive = 1;
    let (client, _) = Client::connect(opts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(pings.load(Ordering::SeqCst) >= 1);
    assert!(!client.is_closed());

    let mut script = Script::new();
    script.answer_pings = false;
    let addr = tcp_server(script).await;
    let mut opts = tcp_opts(addr);
    opts.keep_alive = 1;
    let (client, _) = Client::connect(opts).await.unwrap();
    match tokio::time::timeout(WAIT, client.recv()).await {
        Ok(Some(Event::Closed(Some(reason)))) => assert!(reason.contains("keep-alive"), "{reason}"),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_with_ca_file_and_insecure() {
    let cert = cert();
    let addr = tls_server(Script::new(), &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();

    let mut opts = ClientOptions::new("127.0.0.1", addr.port(), Transport::Tls);
    opts.tls.ca_file = Some(ca.clone());
    opts.tls.server_name = Some("localhost".into());
    let (client, _) = Client::connect(opts).await.unwrap();
    client
        .publish("a", "b", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    client
        .disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();

    // The certificate is for "localhost", not for the IP address.
    let mut opts = ClientOptions::new("127.0.0.1", addr.port(), Transport::Tls);
    opts.tls.ca_file = Some(ca);
    assert!(matches!(
        Client::connect(opts).await,
        Err(ClientError::Tls(_))
    ));

    let mut opts = ClientOptions::new("127.0.0.1", addr.port(), Transport::Tls);
    opts.tls.insecure = true;
    let (client, _) = Client::connect(opts).await.unwrap();
    client.ping().await.unwrap();
}

#[tokio::test]
async fn quic_data_streams_carry_their_own_traffic() {
    let cert = cert();
    let (addr, data_streams) = quic_server(Script::new(), &cert).await;
    let mut opts = ClientOptions::new("127.0.0.1", addr.port(), Transport::Quic);
    opts.tls.insecure = true;
    opts.connect_timeout = WAIT;
    let (control, _) = Client::connect(opts).await.unwrap();
    assert!(control.quic_connection().is_some());

    let data = control.open_stream().await.unwrap();
    data.subscribe(sub("d/#", QoS::AtLeastOnce), Properties::default())
        .await
        .unwrap();
    assert_eq!(data_streams.load(Ordering::SeqCst), 1);
    data.publish("d/1", "on data", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let message = next_publish(&data).await;
    assert_eq!(&message.payload[..], b"on data");

    // The control stream has its own subscriptions (the mock server keeps
    // them per stream) and deliveries.
    control
        .subscribe(sub("c", QoS::ExactlyOnce), Properties::default())
        .await
        .unwrap();
    control
        .publish("c", "on control", QoS::ExactlyOnce, false)
        .await
        .unwrap();
    assert_eq!(&next_publish(&control).await.payload[..], b"on control");

    // Connection migration to a new local port.
    let before = control.local_addr().unwrap();
    control.rebind().await.unwrap();
    let after = control.local_addr().unwrap();
    assert_ne!(before.port(), after.port());
    data.publish("d/2", "after rebind", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&next_publish(&data).await.payload[..], b"after rebind");
    control.ping().await.unwrap();

    control
        .disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
    assert_eq!(data.recv().await, Some(Event::Closed(None)));
    assert_eq!(data.recv().await, None);
}

#[tokio::test]
async fn quic_verifies_the_certificate() {
    let cert = cert();
    let (addr, _) = quic_server(Script::new(), &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();

    let mut opts = ClientOptions::new("127.0.0.1", addr.port(), Transport::Quic);
    opts.tls.ca_file = Some(ca.clone());
    opts.tls.server_name = Some("localhost".into());
    opts.connect_timeout = WAIT;
    let (client, _) = Client::connect(opts).await.unwrap();
    client
        .disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();

    let mut opts = ClientOptions::new("127.0.0.1", addr.port(), Transport::Quic);
    opts.tls.ca_file = Some(ca);
    opts.tls.server_name = Some("other.example".into());
    opts.connect_timeout = WAIT;
    let err = Client::connect(opts).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
}
