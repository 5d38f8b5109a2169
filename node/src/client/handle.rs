//! The client handle: connect, publish, subscribe, receive.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quicmq_proto::mqtt::{
    decode, encode, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, Publish,
    QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
    MAX_PACKET_SIZE,
};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::conn::{Conn, ConnGuard, Link};
use super::driver::{self, FINISH_LINGER};
use super::error::ClientError;
use super::event::Event;
use super::options::{ClientOptions, Transport};
use super::requests::{RequestKind, Response};
use super::stream::{StreamShared, StreamWriter};
use super::transport::{self, Established};

/// After DISCONNECT is delivered, how long to let the server close the
/// connection before the client closes it.
const DISCONNECT_LINGER: Duration = Duration::from_millis(500);
/// How long to let a QUIC endpoint send its CONNECTION_CLOSE.
const QUIC_CLOSE_LINGER: Duration = Duration::from_millis(100);

/// A handle on an MQTT connection (or, from [`open_stream`](Self::open_stream),
/// on one QUIC data stream of it).
///
/// Cheap to clone; clones share the stream and its event queue. Background
/// tasks own the sockets; the connection closes (without DISCONNECT) when
/// the last handle of it is dropped, so call [`disconnect`](Self::disconnect)
/// for a clean end.
///
/// ```no_run
/// use quicmq_node::client::{Client, ClientOptions, Event, QoS, SubscriptionOptions, Transport};
/// use quicmq_proto::mqtt::{Properties, ReasonCode};
///
/// # async fn demo() -> Result<(), quicmq_node::client::ClientError> {
/// let mut opts = ClientOptions::new("127.0.0.1", 14567, Transport::Quic);
/// opts.tls.insecure = true;
/// let (client, connack) = Client::connect(opts).await?;
/// assert!(!connack.reason_code.is_error());
///
/// client
///     .subscribe(vec![("sensors/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))], Properties::default())
///     .await?;
/// client.publish("sensors/1", "21.5", QoS::AtLeastOnce, false).await?;
/// if let Some(Event::Publish(message)) = client.recv().await {
///     println!("{} {:?}", message.topic, message.payload);
/// }
/// client.disconnect(ReasonCode::NORMAL_DISCONNECTION).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

struct Handle {
    guard: Arc<ConnGuard>,
    stream: Arc<StreamShared>,
    events: Mutex<mpsc::Receiver<Event>>,
    closed_reported: AtomicBool,
    local_addr: Option<SocketAddr>,
    tls_resumed: Option<bool>,
    zero_rtt: bool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // A data stream whose handles are all gone is ended (FIN); the
        // control stream lives as long as the connection.
        if !self.stream.is_control() {
            let _ = self.stream.finish(None);
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conn = self.conn();
        f.debug_struct("Client")
            .field("transport", &conn.transport)
            .field("protocol", &conn.version)
            .field("stream", &self.handle.stream.index)
            .field("closed", &conn.closed.is_closed())
            .finish()
    }
}

impl Client {
    /// Connects: opens the transport, sends CONNECT and waits for CONNACK,
    /// all within `opts.connect_timeout`.
    ///
    /// Returns [`ClientError::Refused`] when the CONNACK carries an error
    /// reason code.
    ///
    /// ```no_run
    /// use quicmq_node::client::{Client, ClientError, ClientOptions, Transport};
    ///
    /// # async fn demo() {
    /// let opts = ClientOptions::new("127.0.0.1", 1883, Transport::Tcp);
    /// match Client::connect(opts).await {
    ///     Ok((_client, connack)) => println!("session present: {}", connack.session_present),
    ///     Err(ClientError::Refused(connack)) => eprintln!("refused: {}", connack.reason_code),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// # }
    /// ```
    pub async fn connect(opts: ClientOptions) -> Result<(Client, ConnAck), ClientError> {
        match tokio::time::timeout(opts.connect_timeout, connect(&opts)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout("connect")),
        }
    }

    fn conn(&self) -> &Arc<Conn> {
        &self.handle.guard.0
    }

    fn closed_error(&self) -> ClientError {
        let conn = self.conn();
        match conn.closed.reason() {
            Some(reason) => ClientError::Closed(reason),
            None => ClientError::Closed(self.handle.stream.closed.reason().flatten()),
        }
    }

    /// The server's CONNACK (limits, assigned client identifier, ...).
    pub fn connack(&self) -> &ConnAck {
        &self.conn().connack
    }

    /// The protocol version of the connection.
    pub fn protocol(&self) -> ProtocolVersion {
        self.conn().version
    }

    /// The transport of the connection.
    pub fn transport(&self) -> Transport {
        self.conn().transport
    }

    /// Whether this handle's stream (or the whole connection) is closed.
    pub fn is_closed(&self) -> bool {
        self.conn().closed.is_closed() || self.handle.stream.closed.is_closed()
    }

    /// The local address: the QUIC endpoint's current socket (which
    /// [`rebind`](Self::rebind) changes) or the TCP socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.conn().link {
            Link::Quic { endpoint, .. } => endpoint.local_addr().ok(),
            Link::Stream => self.handle.local_addr,
        }
    }

    /// Over TLS on TCP: whether the handshake resumed an earlier session
    /// with a ticket (no certificate exchanged). `None` over plain TCP and
    /// over QUIC (quinn does not expose the handshake kind; the node's
    /// `quicmq_tls_tickets_opened_total` counts resumptions). Tickets are
    /// kept per process and, with a cluster, any node's ticket resumes on
    /// every node.
    pub fn tls_resumed(&self) -> Option<bool> {
        self.handle.tls_resumed
    }

    /// Over QUIC: whether the CONNECT (and
    /// [`connect_publish`](super::ClientOptions::connect_publish)) travelled
    /// as 0-RTT early data the node accepted, a round trip saved. That takes
    /// a ticket of the node the client returned to (see
    /// [`Resumption`](super::Resumption)). `false` over TCP and TLS.
    pub fn zero_rtt_accepted(&self) -> bool {
        self.handle.zero_rtt
    }

    /// QoS 1 and 2 publishes of the connection waiting for their final
    /// acknowledgement (at most the server's Receive Maximum).
    pub fn publishes_in_flight(&self) -> u16 {
        self.conn().lock().requests.publishes_in_flight()
    }

    /// Publishes `payload` to `topic`. Resolves once the message is written
    /// (QoS 0), acknowledged by PUBACK (QoS 1) or completed by PUBCOMP
    /// (QoS 2), with the reason code of the acknowledgement (`SUCCESS` for
    /// QoS 0). An error reason code (e.g. "Not authorized") is returned as
    /// `Ok`: the exchange itself succeeded.
    ///
    /// Waits while the server's Receive Maximum of QoS > 0 publishes are in
    /// flight.
    ///
    /// ```no_run
    /// # async fn demo(client: quicmq_node::client::Client) -> Result<(), quicmq_node::client::ClientError> {
    /// use quicmq_node::client::QoS;
    /// let reason = client.publish("a/b", "hello", QoS::ExactlyOnce, false).await?;
    /// assert!(!reason.is_error());
    /// # Ok(()) }
    /// ```
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<ReasonCode, ClientError> {
        self.publish_packet(Publish {
            dup: false,
            qos,
            retain,
            topic: topic.to_owned(),
            packet_id: None,
            properties: Properties::default(),
            payload: payload.into(),
        })
        .await
    }

    /// Publishes a PUBLISH built by the caller (properties, topic alias,
    /// ...); the client assigns the packet identifier. A topic alias must be
    /// within the server's Topic Alias Maximum; an empty topic needs one.
    ///
    /// ```no_run
    /// # async fn demo(client: quicmq_node::client::Client) -> Result<(), quicmq_node::client::ClientError> {
    /// use bytes::Bytes;
    /// use quicmq_node::client::QoS;
    /// use quicmq_proto::mqtt::{Properties, Publish};
    ///
    /// let publish = Publish {
    ///     dup: false,
    ///     qos: QoS::AtLeastOnce,
    ///     retain: false,
    ///     topic: "a/b".into(),
    ///     packet_id: None,
    ///     properties: Properties { message_expiry_interval: Some(60), ..Properties::default() },
    ///     payload: Bytes::from_static(b"x"),
    /// };
    /// client.publish_packet(publish).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_packet(&self, mut publish: Publish) -> Result<ReasonCode, ClientError> {
        let conn = self.conn();
        match publish.properties.topic_alias {
            Some(alias) if alias == 0 || alias > conn.server_topic_alias_maximum => {
                return Err(ClientError::InvalidArgument(format!(
                    "topic alias {alias} outside the server's range 1..={}",
                    conn.server_topic_alias_maximum
                )));
            }
            None if publish.topic.is_empty() => {
                return Err(ClientError::InvalidArgument(
                    "empty topic without a topic alias".into(),
                ));
            }
            _ => {}
        }
        let kind = match publish.qos {
            QoS::AtMostOnce => {
                publish.packet_id = None;
                let bytes = conn.encode(&Packet::Publish(publish))?;
                if self.is_closed() {
                    return Err(self.closed_error());
                }
                self.handle
                    .stream
                    .write(bytes)
                    .await
                    .map_err(|_| self.closed_error())?;
                return Ok(ReasonCode::SUCCESS);
            }
            QoS::AtLeastOnce => RequestKind::PublishQos1,
            QoS::ExactlyOnce => RequestKind::PublishQos2,
        };
        let response = self
            .request(kind, move |id| {
                publish.packet_id = Some(id);
                Packet::Publish(publish)
            })
            .await?;
        match response {
            Response::Publish(reason_code) => Ok(reason_code),
            _ => Err(ClientError::Protocol(
                "a publish was answered by a subscription ack".into(),
            )),
        }
    }

    /// Runs one acknowledged request on this handle's stream.
    async fn request(
        &self,
        kind: RequestKind,
        build: impl FnOnce(u16) -> Packet,
    ) -> Result<Response, ClientError> {
        let conn = self.conn();
        let stream = &self.handle.stream;
        let (tx, rx) = oneshot::channel();
        let id = conn.begin(kind, stream, tx).await?;
        let bytes = match conn.encode(&build(id)) {
            Ok(bytes) => bytes,
            Err(e) => {
                conn.cancel(id);
                return Err(e);
            }
        };
        if stream.send(bytes, None).is_err() {
            conn.cancel(id);
            return Err(self.closed_error());
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Subscribes to `filters`; resolves with the SUBACK (one reason code
    /// per filter: the granted QoS or a failure). Messages matching these
    /// subscriptions arrive on this handle's stream.
    ///
    /// ```no_run
    /// # async fn demo(client: quicmq_node::client::Client) -> Result<(), quicmq_node::client::ClientError> {
    /// use quicmq_node::client::{QoS, SubscriptionOptions};
    /// use quicmq_proto::mqtt::Properties;
    /// let suback = client
    ///     .subscribe(vec![("a/+".into(), SubscriptionOptions::new(QoS::ExactlyOnce))], Properties::default())
    ///     .await?;
    /// assert!(suback.reason_codes.iter().all(|code| !code.is_error()));
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(
        &self,
        filters: Vec<(String, SubscriptionOptions)>,
        properties: Properties,
    ) -> Result<SubAck, ClientError> {
        if filters.is_empty() {
            return Err(ClientError::InvalidArgument(
                "SUBSCRIBE needs at least one topic filter".into(),
            ));
        }
        let count = filters.len();
        let response = self
            .request(RequestKind::Subscribe, move |packet_id| {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    filters,
                    properties,
                })
            })
            .await?;
        match response {
            Response::SubAck(suback) if suback.reason_codes.len() == count => Ok(*suback),
            Response::SubAck(suback) => Err(ClientError::Protocol(format!(
                "SUBACK with {} reason codes for {count} topic filters",
                suback.reason_codes.len()
            ))),
            _ => Err(ClientError::Protocol(
                "a SUBSCRIBE was answered by another ack".into(),
            )),
        }
    }

    /// Unsubscribes from `filters`; resolves with the UNSUBACK (reason
    /// codes are empty with MQTT 3.1.1).
    pub async fn unsubscribe(&self, filters: Vec<String>) -> Result<UnsubAck, ClientError> {
        if filters.is_empty() {
            return Err(ClientError::InvalidArgument(
                "UNSUBSCRIBE needs at least one topic filter".into(),
            ));
        }
        let response = self
            .request(RequestKind::Unsubscribe, move |packet_id| {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    filters,
                    properties: Properties::default(),
                })
            })
            .await?;
        match response {
            Response::UnsubAck(unsuback) => Ok(*unsuback),
            _ => Err(ClientError::Protocol(
                "an UNSUBSCRIBE was answered by another ack".into(),
            )),
        }
    }

    /// The next event of this handle's stream: a message, the server's
    /// DISCONNECT, then `Closed` once; `None` after that.
    ///
    /// Messages are buffered up to `ClientOptions::event_capacity`; when
    /// the buffer is full the client stops reading the stream until `recv`
    /// makes room (acknowledgements on that stream wait too).
    ///
    /// ```no_run
    /// # async fn demo(client: quicmq_node::client::Client) {
    /// use quicmq_node::client::Event;
    /// while let Some(event) = client.recv().await {
    ///     match event {
    ///         Event::Publish(p) => println!("{} {}", p.topic, String::from_utf8_lossy(&p.payload)),
    ///         Event::Disconnect(d) => eprintln!("server disconnects: {}", d.reason_code),
    ///         Event::Closed(reason) => eprintln!("closed: {reason:?}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn recv(&self) -> Option<Event> {
        let mut events = self.handle.events.lock().await;
        if let Some(event) = events.recv().await {
            return Some(event);
        }
        if self.handle.closed_reported.swap(true, Ordering::SeqCst) {
            return None;
        }
        let stream = &self.handle.stream;
        let reason = match stream.closed.reason() {
            Some(reason) => reason,
            None => self.conn().closed.reason().flatten(),
        };
        Some(Event::Closed(reason))
    }

    /// Sends PINGREQ on the control stream and resolves with the time until
    /// PINGRESP.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let conn = self.conn();
        let (tx, rx) = oneshot::channel();
        conn.send_ping(Some(tx))?;
        rx.await.map_err(|_| conn.closed_error())
    }

    /// Sends DISCONNECT with `reason` and closes the connection (every
    /// handle and stream of it).
    ///
    /// ```no_run
    /// # async fn demo(client: quicmq_node::client::Client) -> Result<(), quicmq_node::client::ClientError> {
    /// use quicmq_proto::mqtt::ReasonCode;
    /// // Ask the server to publish the will message.
    /// client.disconnect(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE).await?;
    /// # Ok(()) }
    /// ```
    pub async fn disconnect(&self, reason: ReasonCode) -> Result<(), ClientError> {
        self.disconnect_with(Disconnect::new(reason)).await
    }

    /// Like [`disconnect`](Self::disconnect) with a full DISCONNECT packet
    /// (MQTT 5.0 properties: session expiry interval, reason string, user
    /// properties).
    pub async fn disconnect_with(&self, disconnect: Disconnect) -> Result<(), ClientError> {
        let conn = self.conn();
        if conn.closed.is_closed() {
            return Err(conn.closed_error());
        }
        let bytes = conn.encode(&Packet::Disconnect(disconnect))?;
        conn.disconnecting.store(true, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        let queued = {
            let _order = conn.ack_order();
            // Once DISCONNECT is queued the connection is meant to end: the
            // server may close it as soon as it reads DISCONNECT, and the
            // writer may be gone before the end of the stream is queued
            // behind it. That is the clean end this call asked for, not an
            // error.
            conn.control.send(bytes, None).inspect(|()| {
                let _ = conn.control.finish(Some(tx));
            })
        };
        if queued.is_ok() {
            // Written and, for QUIC, acknowledged by the peer.
            let _ = tokio::time::timeout(FINISH_LINGER + Duration::from_secs(1), rx).await;
            // Let the server close first, so it surely reads DISCONNECT.
            let mut closed = conn.closed.watch();
            let _ = tokio::time::timeout(DISCONNECT_LINGER, closed.closed()).await;
        }
        conn.close(None);
        if let Link::Quic { endpoint, .. } = &conn.link {
            let _ = tokio::time::timeout(QUIC_CLOSE_LINGER, endpoint.wait_idle()).await;
        }
        queued
    }

    /// Opens a new bidirectional QUIC data stream on the same connection
    /// and returns a handle bound to it: publishes and subscriptions made
    /// through it travel on that stream, and their acknowledgements and
    /// matching messages come back on it (its [`recv`](Self::recv)).
    /// Packet identifiers, the send quota and topic aliases stay shared by
    /// the connection. Dropping every handle of the stream ends it.
    ///
    /// Fails with [`ClientError::Unsupported`] over TCP and TLS.
    ///
    /// ```no_run
    /// # async fn demo(client: quicmq_node::client::Client) -> Result<(), quicmq_node::client::ClientError> {
    /// use quicmq_node::client::QoS;
    /// let bulk = client.open_stream().await?;
    /// bulk.publish("bulk/data", vec![0u8; 4096], QoS::AtLeastOnce, false).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open_stream(&self) -> Result<Client, ClientError> {
        let conn = self.conn();
        let Some(connection) = conn.quic() else {
            return Err(ClientError::Unsupported(
                "data streams need the QUIC transport",
            ));
        };
        if conn.closed.is_closed() {
            return Err(conn.closed_error());
        }
        let (send, recv) = connection
            .open_bi()
            .await
            .map_err(transport::connection_error)?;
        let (stream, queue) = StreamShared::new(conn.next_stream_index());
        let events = driver::spawn_stream(
            conn,
            stream.clone(),
            queue,
            Box::new(recv),
            StreamWriter::Quic(send),
            BytesMut::new(),
        );
        Ok(Client {
            handle: Arc::new(Handle {
                guard: self.handle.guard.clone(),
                stream,
                events: Mutex::new(events),
                closed_reported: AtomicBool::new(false),
                local_addr: None,
                tls_resumed: self.handle.tls_resumed,
                zero_rtt: self.handle.zero_rtt,
            }),
        })
    }

    /// The QUIC connection (statistics, path, tests); `None` over TCP/TLS.
    pub fn quic_connection(&self) -> Option<quinn::Connection> {
        self.conn().quic().cloned()
    }

    /// Moves the QUIC connection to a new local UDP socket (a new port, as
    /// after a NAT rebinding), exercising connection migration. Fails with
    /// [`ClientError::Unsupported`] over TCP and TLS.
    pub async fn rebind(&self) -> Result<(), ClientError> {
        let Link::Quic { endpoint, .. } = &self.conn().link else {
            return Err(ClientError::Unsupported(
                "rebinding needs the QUIC transport",
            ));
        };
        let bind: SocketAddr = if endpoint.local_addr()?.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        self.rebind_to(bind).await
    }

    /// Moves the QUIC connection to a new local UDP socket bound to
    /// `local` — a new address, as when a device changes networks. Fails
    /// with [`ClientError::Unsupported`] over TCP and TLS.
    ///
    /// ```no_run
    /// # async fn demo(client: quicmq_node::client::Client) -> Result<(), quicmq_node::client::ClientError> {
    /// // From 127.0.0.1 to 127.0.0.2: a new source IP on loopback.
    /// client.rebind_to("127.0.0.2:0".parse().unwrap()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn rebind_to(&self, local: SocketAddr) -> Result<(), ClientError> {
        let Link::Quic { endpoint, .. } = &self.conn().link else {
            return Err(ClientError::Unsupported(
                "rebinding needs the QUIC transport",
            ));
        };
        let socket = std::net::UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        endpoint.rebind(socket)?;
        Ok(())
    }
}

/// The CONNECT packet for `opts`.
fn connect_packet(opts: &ClientOptions) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: opts.protocol,
        clean_start: opts.clean_start,
        keep_alive: opts.keep_alive,
        client_id: opts.client_id.clone(),
        will: opts.will.clone(),
        username: opts.username.clone(),
        password: opts.password.clone(),
        properties: opts.connect_properties(),
    }))
}

async fn connect(opts: &ClientOptions) -> Result<(Client, ConnAck), ClientError> {
    let mut wire = BytesMut::new();
    encode(&connect_packet(opts), opts.protocol, &mut wire)?;
    if let Some(publish) = &opts.connect_publish {
        if publish.qos != QoS::AtMostOnce || publish.topic.is_empty() {
            return Err(ClientError::InvalidArgument(
                "connect_publish must be a QoS 0 PUBLISH with a topic name".into(),
            ));
        }
        encode(&Packet::Publish(publish.clone()), opts.protocol, &mut wire)?;
    }
    let flight = wire.freeze();
    let Established {
        link,
        mut reader,
        mut writer,
        local_addr,
        tls_resumed,
        flight_sent,
        zero_rtt,
    } = transport::establish(opts, &flight).await?;
    let abandon = |link: &Link, why: &str| {
        if let Link::Quic { connection, .. } = link {
            connection.close(0u32.into(), why.as_bytes());
        }
    };

    if !flight_sent {
        if let Err(e) = writer.write_chunks(&mut vec![flight]).await {
            abandon(&link, "write failed");
            return Err(ClientError::Io(e));
        }
    }

    let max = opts.maximum_packet_size.unwrap_or(MAX_PACKET_SIZE);
    let mut buf = BytesMut::with_capacity(1024);
    let connack = loop {
        match decode(&mut buf, opts.protocol, max) {
            Ok(Some(Packet::ConnAck(connack))) => break connack,
            Ok(Some(Packet::Auth(_))) => {
                abandon(&link, "enhanced authentication is not supported");
                return Err(ClientError::Protocol(
                    "AUTH from the server (enhanced authentication is not supported)".into(),
                ));
            }
            Ok(Some(other)) => {
                abandon(&link, "protocol error");
                return Err(ClientError::Protocol(format!(
                    "expected CONNACK, got {}",
                    other.packet_type().name().to_ascii_uppercase()
                )));
            }
            Ok(None) => {}
            Err(e) => {
                abandon(&link, "invalid CONNACK");
                return Err(ClientError::Protocol(format!("invalid CONNACK: {e}")));
            }
        }
        buf.reserve(1024);
        match reader.read_buf(&mut buf).await {
            Ok(0) => {
                return Err(ClientError::Closed(Some(
                    "connection closed by the server before CONNACK".into(),
                )))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(match &link {
                    Link::Quic { connection, .. } => match connection.close_reason() {
                        Some(reason) => transport::connection_error(reason),
                        None => ClientError::Io(e),
                    },
                    Link::Stream => ClientError::Io(e),
                })
            }
        }
    };
    if connack.reason_code.is_error() {
        abandon(&link, "refused");
        return Err(ClientError::Refused(Box::new(connack)));
    }
    if connack.properties.receive_maximum == Some(0) {
        abandon(&link, "protocol error");
        return Err(ClientError::Protocol(
            "CONNACK with Receive Maximum 0".into(),
        ));
    }
    tracing::debug!(
        transport = %opts.transport,
        host = %opts.host,
        port = opts.port,
        session_present = connack.session_present,
        "MQTT connection established"
    );

    let (control, queue) = StreamShared::new(0);
    let conn = Arc::new(Conn::new(opts, connack.clone(), link, control.clone()));
    let events = driver::spawn_stream(&conn, control.clone(), queue, reader, writer, buf);
    driver::spawn_keep_alive(&conn);
    let client = Client {
        handle: Arc::new(Handle {
            guard: Arc::new(ConnGuard(conn)),
            stream: control,
            events: Mutex::new(events),
            closed_reported: AtomicBool::new(false),
            local_addr,
            tls_resumed,
            zero_rtt,
        }),
    };
    Ok((client, connack))
}
