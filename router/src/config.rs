//! Router configuration: one TOML file, every key also a flag and an
//! environment variable (`QUICMQ_<KEY>`), validated at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use quicmq_proto::cluster_tls::{ClusterTls, ClusterTlsError};
use quicmq_proto::hex;
use quicmq_proto::quic_lb::{LbConfig, ServerId};
use serde::{Deserialize, Deserializer};

/// Every key, each optional: read from the command line / environment and
/// from the TOML file, then merged (flags and environment win).
#[derive(Clone, Debug, Default, Parser, Deserialize)]
#[command(
    name = "quicmq-router",
    version,
    about = "quicmq stateless QUIC-LB router"
)]
#[serde(deny_unknown_fields)]
pub struct RouterOverrides {
    /// TOML configuration file.
    #[arg(long, env = "QUICMQ_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Public UDP address clients send to (shared with other routers through
    /// SO_REUSEPORT). Default 0.0.0.0:14567.
    #[arg(long, env = "QUICMQ_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Local UDP address towards the nodes' routed ports. Default 0.0.0.0:0.
    #[arg(long, env = "QUICMQ_INTERNAL_ADDR")]
    pub internal_addr: Option<SocketAddr>,
    /// Admin HTTP address (/metrics, /health/live, /health/ready), or `off`.
    /// Default 0.0.0.0:8090.
    #[arg(long, env = "QUICMQ_ADMIN_ADDR")]
    pub admin_addr: Option<String>,
    /// gRPC addresses of cluster members, HOST:PORT (comma-separated or
    /// repeated): the router follows the cluster's member table, QUIC-LB
    /// configuration and reset key from them (ClusterWatch). Either this or
    /// `node`.
    #[arg(long, env = "QUICMQ_SEEDS", value_delimiter = ',')]
    #[serde(default, deserialize_with = "one_or_many")]
    pub seeds: Vec<String>,
    /// Cluster ID the seeds must belong to (only with `seeds`). Default:
    /// whatever cluster the first seed that answers belongs to.
    #[arg(long, env = "QUICMQ_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// PEM file of the cluster CA certificate(s) (only with `seeds`): the
    /// router dials the seeds with mutual TLS and trusts only nodes with a
    /// certificate of this CA. Required with `seeds` unless
    /// `cluster_plaintext`.
    #[arg(long, env = "QUICMQ_CLUSTER_CA")]
    pub cluster_ca: Option<PathBuf>,
    /// PEM certificate (chain) the router shows the nodes: issued by the
    /// cluster CA for `quicmq-router` (`quicmq ca issue DIR --name NAME
    /// --usage router`), which lets it watch the cluster and nothing else.
    #[arg(long, env = "QUICMQ_CLUSTER_CERT")]
    pub cluster_cert: Option<PathBuf>,
    /// PEM private key of `cluster_cert`.
    #[arg(long, env = "QUICMQ_CLUSTER_KEY")]
    pub cluster_key: Option<PathBuf>,
    /// Watch the cluster over plaintext gRPC (the nodes' `cluster_plaintext`).
    /// Default false.
    #[arg(long, env = "QUICMQ_CLUSTER_PLAINTEXT", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub cluster_plaintext: Option<bool>,
    /// A static node: SERVER_ID=IP:PORT (server ID in hex, the node's routed
    /// port). Repeat for every node. Either this or `seeds`.
    #[arg(long = "node", env = "QUICMQ_NODE", value_delimiter = ',')]
    #[serde(default)]
    pub node: Vec<String>,
    /// QUIC-LB config rotation codepoint of the cluster, 0 to 6. Default 0.
    /// With `seeds`, the cluster's setting is used.
    #[arg(long, env = "QUICMQ_QUIC_LB_CONFIG_ID")]
    pub quic_lb_config_id: Option<u8>,
    /// QUIC-LB nonce length of the cluster, octets. Default 8. With `seeds`,
    /// the cluster's setting is used.
    #[arg(long, env = "QUICMQ_QUIC_LB_NONCE_LEN")]
    pub quic_lb_nonce_len: Option<usize>,
    /// QUIC-LB AES-128 key of the cluster, 32 hex digits (none: plaintext).
    /// With `seeds`, the cluster's key is used.
    #[arg(long, env = "QUICMQ_QUIC_LB_KEY")]
    pub quic_lb_key: Option<String>,
    /// The cluster's stateless reset key, 64 hex digits (the nodes'
    /// `reset_key`). Required with `node`; with `seeds`, the cluster's key
    /// is used.
    #[arg(long, env = "QUICMQ_RESET_KEY")]
    pub reset_key: Option<String>,
    /// Health probe interval, milliseconds. Default 200.
    #[arg(long, env = "QUICMQ_PROBE_INTERVAL_MS")]
    pub probe_interval_ms: Option<u64>,
    /// A node that has not answered a probe for this long is dead,
    /// milliseconds. Default 1000.
    #[arg(long, env = "QUICMQ_DEAD_AFTER_MS")]
    pub dead_after_ms: Option<u64>,
    /// Log filter. Default `info`.
    #[arg(long, env = "QUICMQ_LOG")]
    pub log: Option<String>,
}

/// A configuration error: the key, what is wrong, how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {message}")]
pub struct ConfigError {
    /// The key at fault.
    pub key: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        message: message.into(),
    }
}

/// Accepts a list of strings or one comma-separated string (TOML `seeds`).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_string).collect(),
        OneOrMany::Many(v) => v,
    })
}

/// The validated router configuration.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Public address.
    pub listen: SocketAddr,
    /// Address towards nodes.
    pub internal_addr: SocketAddr,
    /// Admin HTTP address.
    pub admin_addr: Option<SocketAddr>,
    /// Where the node table comes from.
    pub cluster: ClusterSource,
    /// Probe interval.
    pub probe_interval: Duration,
    /// Dead after.
    pub dead_after: Duration,
    /// Log filter.
    pub log: String,
}

/// Where the router learns the nodes, the QUIC-LB configuration and the
/// reset key.
#[derive(Clone, Debug)]
pub enum ClusterSource {
    /// A fixed table from the configuration (`node`).
    Static(StaticCluster),
    /// The cluster's `ClusterWatch` stream, from `seeds`.
    Watch(WatchConfig),
}

/// A node table given in the configuration.
#[derive(Clone, Debug)]
pub struct StaticCluster {
    /// Nodes: server ID and routed address.
    pub nodes: Vec<(ServerId, SocketAddr)>,
    /// QUIC-LB configuration.
    pub quic_lb: LbConfig,
    /// Stateless reset key.
    pub reset_key: [u8; 32],
}

/// Following the cluster through its watch stream.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// gRPC addresses (`HOST:PORT`) of members to watch from, tried in turn.
    pub seeds: Vec<String>,
    /// Cluster ID the seeds must belong to (`None`: the first one seen).
    pub cluster_id: Option<String>,
    /// Settings given explicitly; the cluster's win where they differ.
    pub explicit: ExplicitSettings,
    /// How the router proves itself to the seeds.
    pub tls: WatchTls,
}

/// The cluster TLS files a router watches with, or plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchTls {
    /// `cluster_ca`, `cluster_cert`, `cluster_key`.
    Files {
        /// The CA certificate(s).
        ca: PathBuf,
        /// The router's certificate.
        cert: PathBuf,
        /// Its key.
        key: PathBuf,
    },
    /// `cluster_plaintext`.
    Plaintext,
}

impl WatchTls {
    /// Reads the files into the router's cluster TLS (`None`: plaintext).
    ///
    /// # Errors
    ///
    /// A file that cannot be read or used, named by its key.
    pub fn load(&self) -> Result<Option<ClusterTls>, ConfigError> {
        let WatchTls::Files { ca, cert, key } = self else {
            return Ok(None);
        };
        let read = |path: &PathBuf, key: &'static str| {
            std::fs::read(path)
                .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
        };
        let (ca_pem, cert_pem, key_pem) = (
            read(ca, "cluster_ca")?,
            read(cert, "cluster_cert")?,
            read(key, "cluster_key")?,
        );
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        ClusterTls::new(
            &ca_pem,
            &cert_pem,
            &key_pem,
            provider,
            rustls_pki_types::UnixTime::now(),
        )
        .map(Some)
        .map_err(|e| {
            let key = match e {
                ClusterTlsError::Ca(_) => "cluster_ca",
                ClusterTlsError::Certificate(_) => "cluster_cert",
                ClusterTlsError::Key(_) => "cluster_key",
            };
            invalid(key, e.to_string())
        })
    }
}

/// Which cluster TLS the keys ask for (with `seeds`).
fn watch_tls(
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    plaintext: bool,
) -> Result<WatchTls, ConfigError> {
    match (ca, cert, key, plaintext) {
        (None, None, None, true) => Ok(WatchTls::Plaintext),
        (_, _, _, true) => Err(invalid(
            "cluster_plaintext",
            "cannot be combined with cluster_ca, cluster_cert or cluster_key; choose TLS or plaintext",
        )),
        (Some(ca), Some(cert), Some(key), false) => Ok(WatchTls::Files { ca, cert, key }),
        (None, _, _, false) => Err(invalid(
            "cluster_ca",
            "missing: the router watches the cluster over mutual TLS; give the cluster CA \
             (cluster_ca) and a router certificate (cluster_cert, cluster_key: `quicmq ca \
             issue DIR --name NAME --usage router`), or cluster_plaintext = true where the \
             network secures the cluster",
        )),
        (Some(_), None, _, false) => Err(invalid(
            "cluster_cert",
            "missing: give the router's certificate (`quicmq ca issue DIR --name NAME --usage router`)",
        )),
        (Some(_), Some(_), None, false) => {
            Err(invalid("cluster_key", "missing: give the key of cluster_cert"))
        }
    }
}

/// QUIC-LB settings and reset key as given on the command line or in the
/// file, each `None` when not given. With `seeds` they are only compared
/// with the cluster's (a difference is logged), or used when the cluster
/// sends none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExplicitSettings {
    /// `quic_lb_config_id`.
    pub quic_lb_config_id: Option<u8>,
    /// `quic_lb_nonce_len`.
    pub quic_lb_nonce_len: Option<usize>,
    /// `quic_lb_key`: `Some(None)` when given as empty (plaintext).
    pub quic_lb_key: Option<Option<[u8; 16]>>,
    /// `reset_key`.
    pub reset_key: Option<[u8; 32]>,
}

/// Checks a seed is `HOST:PORT` (or `[IPv6]:PORT`).
fn check_seed(seed: &str) -> Result<(), ConfigError> {
    let bad = || {
        invalid(
            "seeds",
            format!("`{seed}` is not HOST:PORT (a member's gRPC address)"),
        )
    };
    let (host, port) = seed.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && !host.contains('/')
        && !host.contains(char::is_whitespace)
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

impl RouterConfig {
    /// Read flags, environment and the file they name; validate.
    pub fn load() -> Result<RouterConfig, ConfigError> {
        let cli = RouterOverrides::parse();
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid("config", format!("cannot read {}: {e}", path.display()))
                })?;
                toml::from_str(&text).map_err(|e| {
                    invalid(
                        "config",
                        format!("{}: {}", path.display(), e.to_string().trim()),
                    )
                })?
            }
            None => RouterOverrides::default(),
        };
        RouterConfig::resolve(cli, file)
    }

    /// Merge flags/environment over the file over defaults, and validate.
    pub fn resolve(
        cli: RouterOverrides,
        file: RouterOverrides,
    ) -> Result<RouterConfig, ConfigError> {
        let nodes_text = if cli.node.is_empty() {
            file.node
        } else {
            cli.node
        };
        let seeds: Vec<String> = if cli.seeds.is_empty() {
            file.seeds
        } else {
            cli.seeds
        }
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
        let key = match cli.quic_lb_key.or(file.quic_lb_key).as_deref() {
            None => None,
            Some("") => Some(None),
            Some(text) => Some(Some(
                hex::decode_array(text).map_err(|e| invalid("quic_lb_key", e.to_string()))?,
            )),
        };
        let config_id = cli.quic_lb_config_id.or(file.quic_lb_config_id);
        let nonce_len = cli.quic_lb_nonce_len.or(file.quic_lb_nonce_len);
        let reset_key = match cli.reset_key.or(file.reset_key) {
            None => None,
            Some(text) => {
                Some(hex::decode_array(&text).map_err(|e| invalid("reset_key", e.to_string()))?)
            }
        };
        let cluster_id = cli
            .cluster_id
            .or(file.cluster_id)
            .filter(|id| !id.is_empty());
        let path = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let tls_keys = (
            path(cli.cluster_ca.or(file.cluster_ca)),
            path(cli.cluster_cert.or(file.cluster_cert)),
            path(cli.cluster_key.or(file.cluster_key)),
            cli.cluster_plaintext.or(file.cluster_plaintext),
        );
        let cluster = match (seeds.is_empty(), nodes_text.is_empty()) {
            (true, true) => return Err(invalid(
                "seeds",
                "missing: give the cluster's gRPC addresses with --seeds HOST:PORT[,HOST:PORT...] \
                     (or a static table with --node SERVER_ID=IP:PORT for every node)",
            )),
            (false, false) => {
                return Err(invalid(
                    "node",
                    "cannot be combined with `seeds`: give either seeds (the router follows the \
                     cluster) or a static node table, not both",
                ))
            }
            (false, true) => {
                for seed in &seeds {
                    check_seed(seed)?;
                }
                // Validate what can be validated without the cluster's
                // server ID length (1 octet is the most lenient).
                LbConfig::new(config_id.unwrap_or(0), 1, nonce_len.unwrap_or(8), None).map_err(
                    |e| {
                        invalid(
                            if config_id.is_some_and(|id| id > 6) {
                                "quic_lb_config_id"
                            } else {
                                "quic_lb_nonce_len"
                            },
                            e.to_string(),
                        )
                    },
                )?;
                let (ca, cert, key_file, plaintext) = tls_keys;
                ClusterSource::Watch(WatchConfig {
                    seeds,
                    cluster_id,
                    explicit: ExplicitSettings {
                        quic_lb_config_id: config_id,
                        quic_lb_nonce_len: nonce_len,
                        quic_lb_key: key,
                        reset_key,
                    },
                    tls: watch_tls(ca, cert, key_file, plaintext.unwrap_or(false))?,
                })
            }
            (true, false) => {
                if cluster_id.is_some() {
                    return Err(invalid(
                        "cluster_id",
                        "only used with `seeds` (a static node table names no cluster)",
                    ));
                }
                if tls_keys.0.is_some() || tls_keys.1.is_some() || tls_keys.2.is_some() {
                    return Err(invalid(
                        "cluster_ca",
                        "only used with `seeds` (a static node table watches no cluster)",
                    ));
                }
                ClusterSource::Static(static_cluster(
                    &nodes_text,
                    config_id,
                    nonce_len,
                    key.flatten(),
                    reset_key,
                )?)
            }
        };
        let admin_addr =
            match cli.admin_addr.or(file.admin_addr).as_deref() {
                Some("off") => None,
                Some(text) => Some(text.parse().map_err(|_| {
                    invalid("admin_addr", format!("`{text}` is not IP:PORT or `off`"))
                })?),
                None => "0.0.0.0:8090".parse().ok(),
            };
        let probe_interval = Duration::from_millis(
            cli.probe_interval_ms
                .or(file.probe_interval_ms)
                .unwrap_or(200),
        );
        let dead_after =
            Duration::from_millis(cli.dead_after_ms.or(file.dead_after_ms).unwrap_or(1000));
        if probe_interval.is_zero() || dead_after <= probe_interval {
            return Err(invalid(
                "dead_after_ms",
                "must be longer than probe_interval_ms (which must be > 0)",
            ));
        }
        let log = cli.log.or(file.log).unwrap_or_else(|| "info".into());
        // Non-ASCII text can panic the filter parser: refused first.
        if !log.is_ascii() || tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(invalid("log", format!("`{log}` is not a valid log filter")));
        }
        Ok(RouterConfig {
            listen: cli
                .listen
                .or(file.listen)
                .unwrap_or_else(|| ([0, 0, 0, 0], 14567).into()),
            internal_addr: cli
                .internal_addr
                .or(file.internal_addr)
                .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            admin_addr,
            cluster,
            probe_interval,
            dead_after,
            log,
        })
    }
}

/// The static node table and the settings it needs in full.
fn static_cluster(
    nodes_text: &[String],
    config_id: Option<u8>,
    nonce_len: Option<usize>,
    key: Option<[u8; 16]>,
    reset_key: Option<[u8; 32]>,
) -> Result<StaticCluster, ConfigError> {
    let mut nodes = Vec::new();
    for entry in nodes_text {
        let (sid, addr) = entry
            .split_once('=')
            .ok_or_else(|| invalid("node", format!("`{entry}` is not SERVER_ID=IP:PORT")))?;
        let sid = hex::decode(sid).map_err(|e| invalid("node", format!("`{entry}`: {e}")))?;
        let sid = ServerId::new(&sid).map_err(|e| invalid("node", format!("`{entry}`: {e}")))?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| invalid("node", format!("`{entry}`: `{addr}` is not IP:PORT")))?;
        nodes.push((sid, addr));
    }
    let Some(sid_len) = nodes.first().map(|(sid, _)| sid.len()) else {
        return Err(invalid(
            "node",
            "no node given; add --node SERVER_ID=IP:PORT for every node",
        ));
    };
    if nodes.iter().any(|(sid, _)| sid.len() != sid_len) {
        return Err(invalid(
            "node",
            "server IDs of different lengths; every node's server ID has the cluster's length",
        ));
    }
    let quic_lb = LbConfig::new(config_id.unwrap_or(0), sid_len, nonce_len.unwrap_or(8), key)
        .map_err(|e| {
            invalid(
                "quic_lb_nonce_len",
                format!("{e}; use the nodes' QUIC-LB settings"),
            )
        })?;
    let reset_key = reset_key.ok_or_else(|| {
        invalid("reset_key", "missing; a static node table needs the nodes' reset key (their `reset_key`, or the `reset-key` file in a node's data directory), or use `seeds` to take it from the cluster")
    })?;
    Ok(StaticCluster {
        nodes,
        quic_lb,
        reset_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> RouterOverrides {
        toml::from_str(text).unwrap()
    }

    const KEY: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn a_complete_file_resolves() {
        let c = RouterConfig::resolve(
            RouterOverrides::default(),
            file(&format!("node = [\"0001=127.0.0.1:14568\", \"0002=127.0.0.1:24568\"]\nreset_key = \"{KEY}\"")),
        )
        .unwrap();
        let ClusterSource::Static(cluster) = &c.cluster else {
            panic!("static table expected: {c:?}");
        };
        assert_eq!(cluster.nodes.len(), 2);
        assert_eq!(cluster.quic_lb.cid_len(), 11);
        assert_eq!(c.listen.port(), 14567);
    }

    #[test]
    fn seeds_need_no_keys_and_keep_explicit_ones_for_comparison() {
        for text in [
            "seeds = [\"n1:7000\", \"10.0.0.2:7000\", \"[::1]:7000\"]\ncluster_plaintext = true",
            "seeds = \"n1:7000, 10.0.0.2:7000,[::1]:7000\"\ncluster_plaintext = true",
        ] {
            let c = RouterConfig::resolve(RouterOverrides::default(), file(text)).unwrap();
            let ClusterSource::Watch(watch) = c.cluster else {
                panic!("watch expected");
            };
            assert_eq!(watch.seeds, ["n1:7000", "10.0.0.2:7000", "[::1]:7000"]);
            assert_eq!(watch.explicit, ExplicitSettings::default());
            assert_eq!(watch.cluster_id, None);
        }
        let c = RouterConfig::resolve(
            RouterOverrides::default(),
            file(&format!(
                "seeds = \"n1:7000\"\ncluster_id = \"prod\"\nreset_key = \"{KEY}\"\n\
                 quic_lb_key = \"\"\nquic_lb_nonce_len = 6\ncluster_ca = \"ca.pem\"\n\
                 cluster_cert = \"r.pem\"\ncluster_key = \"r-key.pem\""
            )),
        )
        .unwrap();
        let ClusterSource::Watch(watch) = c.cluster else {
            panic!("watch expected");
        };
        assert_eq!(watch.cluster_id.as_deref(), Some("prod"));
        assert_eq!(watch.explicit.quic_lb_key, Some(None), "empty: plaintext");
        assert_eq!(watch.explicit.quic_lb_nonce_len, Some(6));
        assert_eq!(watch.explicit.quic_lb_config_id, None);
        assert!(watch.explicit.reset_key.is_some());
        assert_eq!(
            watch.tls,
            WatchTls::Files {
                ca: "ca.pem".into(),
                cert: "r.pem".into(),
                key: "r-key.pem".into()
            }
        );
    }

    #[test]
    fn watching_needs_cluster_tls_or_says_plaintext() {
        for (text, key) in [
            ("seeds = \"n1:7000\"", "cluster_ca"),
            ("seeds = \"n1:7000\"\ncluster_ca = \"c\"", "cluster_cert"),
            (
                "seeds = \"n1:7000\"\ncluster_ca = \"c\"\ncluster_cert = \"r\"",
                "cluster_key",
            ),
            (
                "seeds = \"n1:7000\"\ncluster_ca = \"c\"\ncluster_plaintext = true",
                "cluster_plaintext",
            ),
            (
                "node = [\"0001=127.0.0.1:1\"]\nreset_key = \"0000000000000000000000000000000000000000000000000000000000000001\"\ncluster_ca = \"c\"",
                "cluster_ca",
            ),
        ] {
            let err = RouterConfig::resolve(RouterOverrides::default(), file(text)).unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
    }

    #[test]
    fn flags_beat_the_file_for_seeds() {
        let cli = RouterOverrides::try_parse_from([
            "quicmq-router",
            "--seeds",
            "a:1,b:2",
            "--cluster-plaintext",
            "--seeds",
            "c:3",
        ])
        .unwrap();
        assert_eq!(cli.cluster_plaintext, Some(true), "a bare flag is true");
        let c = RouterConfig::resolve(cli, file("seeds = [\"file:1\"]")).unwrap();
        let ClusterSource::Watch(watch) = c.cluster else {
            panic!("watch expected");
        };
        assert_eq!(watch.seeds, ["a:1", "b:2", "c:3"]);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("".to_string(), "seeds"),
            ("seeds = []".to_string(), "seeds"),
            (
                "seeds = [\"n1:7000\"]\nnode = [\"0001=127.0.0.1:1\"]".to_string(),
                "node",
            ),
            ("seeds = [\"n1\"]".to_string(), "seeds"),
            ("seeds = \"n1:0\"".to_string(), "seeds"),
            ("seeds = \"http://n1:7000\"".to_string(), "seeds"),
            ("seeds = \"::1:7000\"".to_string(), "seeds"),
            (
                "seeds = \"n1:7000\"\nreset_key = \"00\"".to_string(),
                "reset_key",
            ),
            (
                "seeds = \"n1:7000\"\nquic_lb_key = \"0g\"".to_string(),
                "quic_lb_key",
            ),
            (
                "seeds = \"n1:7000\"\nquic_lb_nonce_len = 2".to_string(),
                "quic_lb_nonce_len",
            ),
            (
                "seeds = \"n1:7000\"\nquic_lb_config_id = 7".to_string(),
                "quic_lb_config_id",
            ),
            (
                format!("node = [\"0001=127.0.0.1:1\"]\nreset_key = \"{KEY}\"\ncluster_id = \"c\""),
                "cluster_id",
            ),
            (format!("node = [\"0001\"]\nreset_key = \"{KEY}\""), "node"),
            (
                format!("node = [\"01=127.0.0.1:1\", \"0002=127.0.0.1:2\"]\nreset_key = \"{KEY}\""),
                "node",
            ),
            ("node = [\"0001=127.0.0.1:1\"]".to_string(), "reset_key"),
            (
                "node = [\"0001=127.0.0.1:1\"]\nreset_key = \"00\"".to_string(),
                "reset_key",
            ),
            (
                format!(
                    "node = [\"0001=127.0.0.1:1\"]\nreset_key = \"{KEY}\"\nquic_lb_nonce_len = 2"
                ),
                "quic_lb_nonce_len",
            ),
            (
                format!("node = [\"0001=127.0.0.1:1\"]\nreset_key = \"{KEY}\"\ndead_after_ms = 10"),
                "dead_after_ms",
            ),
        ];
        for (text, key) in cases {
            let err = RouterConfig::resolve(RouterOverrides::default(), file(&text)).unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
    }
}
