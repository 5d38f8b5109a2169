//! How to connect: transport, TLS and the fields of CONNECT.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use quicmq_proto::mqtt::{LastWill, Properties, ProtocolVersion, Publish};

use super::resumption::Resumption;

/// The transport that carries MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// MQTT over QUIC (ALPN `mqtt`): a control stream plus optional data
    /// streams. Always TLS 1.3.
    #[default]
    Quic,
    /// MQTT over plain TCP.
    Tcp,
    /// MQTT over TLS over TCP.
    Tls,
}

impl Transport {
    /// The default port: UDP 14567 for QUIC, TCP 1883 and 8883 for TCP and TLS.
    ///
    /// ```
    /// use quicmq_node::client::Transport;
    /// assert_eq!(Transport::Quic.default_port(), 14567);
    /// assert_eq!(Transport::Tcp.default_port(), 1883);
    /// assert_eq!(Transport::Tls.default_port(), 8883);
    /// ```
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Quic => 14567,
            Transport::Tcp => 1883,
            Transport::Tls => 8883,
        }
    }

    /// Lower-case name: `quic`, `tcp` or `tls`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Whether the transport uses TLS (QUIC always does).
    pub fn uses_tls(self) -> bool {
        !matches!(self, Transport::Tcp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = String;

    /// Parses `quic`, `tcp` or `tls` (any case).
    ///
    /// ```
    /// use quicmq_node::client::Transport;
    /// assert_eq!("TLS".parse::<Transport>(), Ok(Transport::Tls));
    /// assert!("udp".parse::<Transport>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "quic" => Ok(Transport::Quic),
            "tcp" => Ok(Transport::Tcp),
            "tls" => Ok(Transport::Tls),
            other => Err(format!("unknown transport {other:?} (quic, tcp or tls)")),
        }
    }
}

/// TLS settings for [`Transport::Quic`] and [`Transport::Tls`].
///
/// Without `ca_file` and without `insecure`, the system's CA bundle is used
/// (`SSL_CERT_FILE`, else the usual locations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) that the server's certificate
    /// must chain to.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (handshake signatures are still
    /// verified). For tests and self-signed development setups only.
    pub insecure: bool,
    /// Name to verify the certificate against and send as SNI; the host
    /// when `None`.
    pub server_name: Option<String>,
    /// PEM certificate chain and private key to present to a broker that
    /// asks for client certificates (mutual TLS); `None`: no certificate.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Everything [`Client::connect`](super::Client::connect) needs.
///
/// ```
/// use std::time::Duration;
/// use quicmq_node::client::{ClientOptions, Transport};
///
/// let mut opts = ClientOptions::new("127.0.0.1", 14567, Transport::Quic);
/// opts.client_id = "sensor-1".into();
/// opts.clean_start = false;
/// opts.session_expiry_interval = Some(3600);
/// opts.tls.insecure = true;
/// opts.connect_timeout = Duration::from_secs(5);
/// assert_eq!(opts.keep_alive, 60);
/// ```
#[derive(Clone)]
pub struct ClientOptions {
    /// Host name or IP address of the server.
    pub host: String,
    /// Port (UDP for QUIC, TCP otherwise).
    pub port: u16,
    /// Transport to use.
    pub transport: Transport,
    /// TLS settings (QUIC and TLS).
    pub tls: TlsOptions,
    /// MQTT protocol version; 5.0 by default.
    pub protocol: ProtocolVersion,
    /// Client identifier; empty lets a 5.0 server assign one (see the
    /// CONNACK's Assigned Client Identifier).
    pub client_id: String,
    /// Clean Start (5.0) / Clean Session (3.1.1); `true` by default.
    pub clean_start: bool,
    /// Keep alive in seconds (0 = off); 60 by default. A Server Keep Alive
    /// in CONNACK takes precedence.
    pub keep_alive: u16,
    /// Session Expiry Interval (5.0) in seconds; `None` = 0, the session
    /// ends with the connection.
    pub session_expiry_interval: Option<u32>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Will message.
    pub will: Option<LastWill>,
    /// Receive Maximum (5.0) to announce: QoS > 0 messages the server may
    /// have unacknowledged towards this client.
    pub receive_maximum: Option<u16>,
    /// Topic Alias Maximum (5.0) to announce; `None` = the server may not
    /// use topic aliases.
    pub topic_alias_maximum: Option<u16>,
    /// Maximum Packet Size (5.0) to announce and enforce on what the
    /// server sends.
    pub maximum_packet_size: Option<u32>,
    /// Further CONNECT properties (5.0): user properties, request problem
    /// information, authentication method, ... The fields above override
    /// the corresponding properties here.
    pub properties: Properties,
    /// Limit on connecting: name resolution, transport and TLS handshake,
    /// CONNECT/CONNACK. 10 s by default.
    pub connect_timeout: Duration,
    /// Events a handle buffers before the client stops reading its stream
    /// (backpressure towards the server). 1024 by default.
    pub event_capacity: usize,
    /// QUIC: interval of QUIC-level keep-alive (PING frames), so an idle
    /// connection does not hit the idle timeout. 5 s by default.
    pub quic_keep_alive_interval: Option<Duration>,
    /// QUIC: idle timeout the client proposes (the smaller of the two
    /// endpoints' values applies). 30 s by default.
    pub quic_idle_timeout: Duration,
    /// QUIC: an existing client endpoint (one UDP socket) to open the
    /// connection on, shared with other connections; `None` (the default)
    /// binds a new endpoint per connection. Its default client config is
    /// not used: the connection gets one built from these options.
    /// [`Client::rebind`](super::Client::rebind) on a connection of a shared
    /// endpoint moves every connection of it.
    pub quic_endpoint: Option<quinn::Endpoint>,
    /// Present QUIC address-validation tokens from earlier connections of
    /// this process (default `true`): the server skips address validation
    /// and routers steer the client back to the node that issued the token.
    /// `false` makes every connection look new (tokens link connections).
    pub quic_reuse_tokens: bool,
    /// QUIC: the TLS session tickets and address-validation tokens kept
    /// between connections. By default one store per process
    /// ([`Resumption::shared`]); give each long-lived client its own
    /// ([`Resumption::new`]) so that its reconnections find their tickets.
    pub resumption: Resumption,
    /// QUIC: send the CONNECT (and [`connect_publish`](Self::connect_publish))
    /// as 0-RTT early data when a ticket of the node allows it, saving a
    /// round trip (default `true`). The node accepts each ticket's early
    /// data once, so a replayed flight is refused; when the node refuses
    /// early data the client sends the same packets again once the
    /// handshake is done. [`Client::zero_rtt_accepted`](super::Client::zero_rtt_accepted)
    /// tells which happened.
    pub zero_rtt: bool,
    /// The local IP address to connect from (TCP and TLS sockets, and a
    /// QUIC endpoint of the connection's own); `None` (the default) lets
    /// the system choose. Load tools spread clients over several loopback
    /// addresses with it.
    pub local_ip: Option<std::net::IpAddr>,
    /// A QoS 0 PUBLISH sent right behind the CONNECT, before the CONNACK
    /// (MQTT allows it): with 0-RTT, the message leaves in the client's
    /// first flight. Lost if the server refuses the connection.
    pub connect_publish: Option<Publish>,
}

impl ClientOptions {
    /// Options for `host:port` over `transport`, with MQTT 5.0, an empty
    /// client identifier, clean start, keep alive 60 s and no TLS
    /// overrides.
    pub fn new(host: impl Into<String>, port: u16, transport: Transport) -> ClientOptions {
        ClientOptions {
            host: host.into(),
            port,
            transport,
            tls: TlsOptions::default(),
            protocol: ProtocolVersion::V5,
            client_id: String::new(),
            clean_start: true,
            keep_alive: 60,
            session_expiry_interval: None,
            username: None,
            password: None,
            will: None,
            receive_maximum: None,
            topic_alias_maximum: None,
            maximum_packet_size: None,
            properties: Properties::default(),
            connect_timeout: Duration::from_secs(10),
            event_capacity: 1024,
            quic_keep_alive_interval: Some(Duration::from_secs(5)),
            quic_idle_timeout: Duration::from_secs(30),
            quic_endpoint: None,
            quic_reuse_tokens: true,
            resumption: Resumption::shared(),
            zero_rtt: true,
            local_ip: None,
            connect_publish: None,
        }
    }

    /// The CONNECT properties: [`properties`](Self::properties) with the
    /// dedicated fields applied. Empty for MQTT 3.1.1.
    pub fn connect_properties(&self) -> Properties {
        if self.protocol == ProtocolVersion::V311 {
            return Properties::default();
        }
        let mut props = self.properties.clone();
        if self.session_expiry_interval.is_some() {
            props.session_expiry_interval = self.session_expiry_interval;
        }
        if self.receive_maximum.is_some() {
            props.receive_maximum = self.receive_maximum;
        }
        if self.topic_alias_maximum.is_some() {
            props.topic_alias_maximum = self.topic_alias_maximum;
        }
        if self.maximum_packet_size.is_some() {
            props.maximum_packet_size = self.maximum_packet_size;
        }
        props
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("tls", &self.tls)
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("session_expiry_interval", &self.session_expiry_interval)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("will", &self.will)
            .field("receive_maximum", &self.receive_maximum)
            .field("topic_alias_maximum", &self.topic_alias_maximum)
            .field("maximum_packet_size", &self.maximum_packet_size)
            .field("properties", &self.properties)
            .field("connect_timeout", &self.connect_timeout)
            .field("event_capacity", &self.event_capacity)
            .field("quic_keep_alive_interval", &self.quic_keep_alive_interval)
            .field("quic_idle_timeout", &self.quic_idle_timeout)
            .field(
                "quic_endpoint",
                &self
                    .quic_endpoint
                    .as_ref()
                    .map(|endpoint| endpoint.local_addr().ok()),
            )
            .field("quic_reuse_tokens", &self.quic_reuse_tokens)
            .field("resumption", &self.resumption)
            .field("zero_rtt", &self.zero_rtt)
            .field("connect_publish", &self.connect_publish)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_properties_apply_fields_over_base() {
        let mut opts = ClientOptions::new("h", 1, Transport::Tcp);
        opts.properties.receive_maximum = Some(5);
        opts.properties.user_properties = vec![("k".into(), "v".into())];
        opts.session_expiry_interval = Some(60);
        opts.topic_alias_maximum = Some(10);
        let props = opts.connect_properties();
        assert_eq!(props.receive_maximum, Some(5));
        assert_eq!(props.session_expiry_interval, Some(60));
        assert_eq!(props.topic_alias_maximum, Some(10));
        assert_eq!(props.user_properties.len(), 1);
        opts.protocol = ProtocolVersion::V311;
        assert_eq!(opts.connect_properties(), Properties::default());
    }

    #[test]
    fn debug_hides_the_password() {
        let mut opts = ClientOptions::new("h", 1, Transport::Tcp);
        opts.password = Some(Bytes::from_static(b"hunter2"));
        let text = format!("{opts:?}");
        assert!(!text.contains("hunter2"));
        assert!(text.contains("redacted"));
    }
}
