//! Router configuration: one TOML file, every key also a flag and an
//! environment variable (`QUICMQ_<KEY>`), validated at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use quicmq_proto::hex;
use quicmq_proto::quic_lb::{LbConfig, ServerId};
use serde::Deserialize;

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
    /// A node: SERVER_ID=IP:PORT (server ID in hex, the node's routed port).
    /// Repeat for every node.
    #[arg(long = "node", env = "QUICMQ_NODE", value_delimiter = ',')]
    #[serde(default)]
    pub node: Vec<String>,
    /// QUIC-LB config rotation codepoint of the cluster, 0 to 6. Default 0.
    #[arg(long, env = "QUICMQ_QUIC_LB_CONFIG_ID")]
    pub quic_lb_config_id: Option<u8>,
    /// QUIC-LB nonce length of the cluster, octets. Default 8.
    #[arg(long, env = "QUICMQ_QUIC_LB_NONCE_LEN")]
    pub quic_lb_nonce_len: Option<usize>,
    /// QUIC-LB AES-128 key of the cluster, 32 hex digits (none: plaintext).
    #[arg(long, env = "QUICMQ_QUIC_LB_KEY")]
    pub quic_lb_key: Option<String>,
    /// The cluster's stateless reset key, 64 hex digits (the nodes' `reset_key`).
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

/// The validated router configuration.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Public address.
    pub listen: SocketAddr,
    /// Address towards nodes.
    pub internal_addr: SocketAddr,
    /// Admin HTTP address.
    pub admin_addr: Option<SocketAddr>,
    /// Nodes: server ID and routed address.
    pub nodes: Vec<(ServerId, SocketAddr)>,
    /// QUIC-LB configuration.
    pub quic_lb: LbConfig,
    /// Stateless reset key.
    pub reset_key: [u8; 32],
    /// Probe interval.
    pub probe_interval: Duration,
    /// Dead after.
    pub dead_after: Duration,
    /// Log filter.
    pub log: String,
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
        let mut nodes = Vec::new();
        for entry in &nodes_text {
            let (sid, addr) = entry
                .split_once('=')
                .ok_or_else(|| invalid("node", format!("`{entry}` is not SERVER_ID=IP:PORT")))?;
            let sid = hex::decode(sid).map_err(|e| invalid("node", format!("`{entry}`: {e}")))?;
            let sid =
                ServerId::new(&sid).map_err(|e| invalid("node", format!("`{entry}`: {e}")))?;
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
        let key = match cli.quic_lb_key.or(file.quic_lb_key).as_deref() {
            None | Some("") => None,
            Some(text) => {
                Some(hex::decode_array(text).map_err(|e| invalid("quic_lb_key", e.to_string()))?)
            }
        };
        let quic_lb = LbConfig::new(
            cli.quic_lb_config_id
                .or(file.quic_lb_config_id)
                .unwrap_or(0),
            sid_len,
            cli.quic_lb_nonce_len
                .or(file.quic_lb_nonce_len)
                .unwrap_or(8),
            key,
        )
        .map_err(|e| {
            invalid(
                "quic_lb_nonce_len",
                format!("{e}; use the nodes' QUIC-LB settings"),
            )
        })?;
        let reset_text = cli.reset_key.or(file.reset_key).ok_or_else(|| {
            invalid("reset_key", "missing; use the nodes' reset key (their `reset_key`, or the `reset-key` file in a node's data directory)")
        })?;
        let reset_key =
            hex::decode_array(&reset_text).map_err(|e| invalid("reset_key", e.to_string()))?;
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
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
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
            nodes,
            quic_lb,
            reset_key,
            probe_interval,
            dead_after,
            log,
        })
    }
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
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.quic_lb.cid_len(), 11);
        assert_eq!(c.listen.port(), 14567);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("".to_string(), "node"),
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
