//! What a QUIC client keeps between its connections so that reconnecting
//! is cheap: TLS session tickets and QUIC address-validation tokens.
//!
//! A quicmq cluster hands out two kinds of tickets. A client's first
//! connection (no token) gets *cluster tickets*, sealed with the cluster's
//! ticket key: they resume the TLS session on any node, without 0-RTT. A
//! client that comes back with a token is steered by the routers to the
//! node that issued it and gets *home tickets*: node-local, single-use
//! sessions with which that node accepts 0-RTT early data (the CONNECT).
//!
//! [`Resumption`] keeps both: a home ticket is offered first (0-RTT when the
//! client gets home), a cluster ticket when there is none or after the
//! connection was lost ([`Resumption::set_failover`]: the node may be dead,
//! and only a cluster ticket resumes elsewhere). Tickets are single use,
//! and a connection served with home tickets brings no new cluster ones,
//! so when none is left the next connection goes without its token: it is
//! served as a new client and gets cluster tickets again.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

/// Tickets of each kind kept per server name.
const TICKETS_PER_KIND: usize = 4;

/// The TLS 1.3 tickets of a [`Resumption`], by kind. Home tickets are kept
/// per server address too: a client that talks to nodes directly (not
/// through a router's shared address) offers a node only its own.
#[derive(Debug)]
pub(crate) struct TicketStore {
    home: Mutex<HashMap<(SocketAddr, ServerName<'static>), TicketQueue>>,
    cluster: Mutex<HashMap<ServerName<'static>, TicketQueue>>,
    /// Key exchange hints and TLS 1.2 sessions.
    other: ClientSessionMemoryCache,
    failover: AtomicBool,
}

/// Tickets of one kind, newest last.
#[derive(Default)]
struct TicketQueue(VecDeque<Tls13ClientSessionValue>);

impl std::fmt::Debug for TicketQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} tickets", self.0.len())
    }
}

impl TicketQueue {
    fn push(&mut self, value: Tls13ClientSessionValue) {
        if self.0.len() >= TICKETS_PER_KIND {
            self.0.pop_front();
        }
        self.0.push_back(value);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TicketStore {
    fn new() -> TicketStore {
        TicketStore {
            home: Mutex::new(HashMap::new()),
            cluster: Mutex::new(HashMap::new()),
            other: ClientSessionMemoryCache::new(64),
            failover: AtomicBool::new(false),
        }
    }

    /// (home tickets for `server`, cluster tickets) held for `name`.
    fn counts(&self, server: SocketAddr, name: &str) -> (usize, usize) {
        let Ok(name) = ServerName::try_from(name.to_owned()) else {
            return (0, 0);
        };
        let home = lock(&self.home)
            .get(&(server, name.clone()))
            .map_or(0, |q| q.0.len());
        let cluster = lock(&self.cluster).get(&name).map_or(0, |q| q.0.len());
        (home, cluster)
    }

    /// Which ticket a connection to `server` offers.
    fn take(
        &self,
        server: SocketAddr,
        name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let home = || {
            lock(&self.home)
                .get_mut(&(server, name.clone()))
                .and_then(|q| q.0.pop_back())
        };
        let cluster = || {
            lock(&self.cluster)
                .get_mut(name)
                .and_then(|q| q.0.pop_back())
        };
        if self.failover.load(Ordering::Relaxed) {
            cluster().or_else(home)
        } else {
            home().or_else(cluster)
        }
    }

    fn insert(
        &self,
        server: SocketAddr,
        name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        // Home tickets announce early data; cluster tickets never do.
        if value.max_early_data_size() > 0 {
            lock(&self.home)
                .entry((server, name))
                .or_default()
                .push(value);
        } else {
            lock(&self.cluster).entry(name).or_default().push(value);
        }
    }
}

/// A [`TicketStore`] as one connection (to `server`) sees it.
#[derive(Debug)]
struct ConnectionTickets {
    store: Arc<TicketStore>,
    server: SocketAddr,
}

impl ClientSessionStore for ConnectionTickets {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.store.other.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.store.other.kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.store.other.set_tls12_session(server_name, value);
    }

    fn tls12_session(
        &self,
        server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.store.other.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.store.other.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.store.insert(self.server, server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.store.take(self.server, server_name)
    }
}

/// Address-validation tokens, withheld while a connection should fetch
/// cluster tickets.
#[derive(Debug)]
struct TokenStore {
    tokens: Arc<quinn::TokenMemoryCache>,
    tickets: Arc<TicketStore>,
    server: SocketAddr,
}

impl quinn::TokenStore for TokenStore {
    fn insert(&self, server_name: &str, token: Bytes) {
        self.tokens.insert(server_name, token);
    }

    fn take(&self, server_name: &str) -> Option<Bytes> {
        let (home, cluster) = self.tickets.counts(self.server, server_name);
        if cluster == 0 && home > 0 {
            // Served as a new client: cluster tickets come back. Without any
            // ticket at all the token still helps (address validation).
            return None;
        }
        self.tokens.take(server_name)
    }
}

/// Tickets and tokens a QUIC client carries from one connection to the
/// next. Clone it to share; [`Resumption::new`] starts empty,
/// [`Resumption::shared`] is one per process (the default of
/// [`ClientOptions`](super::ClientOptions)).
///
/// ```
/// use quicmq_node::client::{ClientOptions, Resumption, Transport};
///
/// let mut opts = ClientOptions::new("localhost", 14567, Transport::Quic);
/// // This client's own tickets, so reconnections of other clients in the
/// // process do not take them.
/// opts.resumption = Resumption::new();
/// let server = "127.0.0.1:14567".parse().unwrap();
/// assert_eq!(opts.resumption.tickets_held(server, "localhost"), (0, 0));
/// ```
#[derive(Clone)]
pub struct Resumption {
    tickets: Arc<TicketStore>,
    tokens: Arc<quinn::TokenMemoryCache>,
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumption")
            .field("tickets", &self.tickets)
            .field("failover", &self.tickets.failover.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for Resumption {
    fn default() -> Self {
        Resumption::shared()
    }
}

impl Resumption {
    /// An empty store of its own.
    pub fn new() -> Resumption {
        Resumption {
            tickets: Arc::new(TicketStore::new()),
            tokens: Arc::new(quinn::TokenMemoryCache::default()),
        }
    }

    /// The store shared by every client of this process that has none of
    /// its own.
    pub fn shared() -> Resumption {
        static SHARED: OnceLock<Resumption> = OnceLock::new();
        SHARED.get_or_init(Resumption::new).clone()
    }

    /// Whether this is the process-wide [`Resumption::shared`] store.
    pub fn is_shared(&self) -> bool {
        Arc::ptr_eq(&self.tickets, &Resumption::shared().tickets)
    }

    /// After a lost connection, offer a cluster ticket first: the node the
    /// client was on may be gone, and only a cluster ticket resumes on
    /// another. `false` (after a connection succeeded) offers a home ticket
    /// first again, for 0-RTT.
    pub fn set_failover(&self, failover: bool) {
        self.tickets.failover.store(failover, Ordering::Relaxed);
    }

    /// Tickets held for `server_name`: home tickets for the server at
    /// `server` (0-RTT there), cluster tickets (any node).
    pub fn tickets_held(&self, server: SocketAddr, server_name: &str) -> (usize, usize) {
        self.tickets.counts(server, server_name)
    }

    /// The ticket store a connection to `server` uses.
    pub(crate) fn session_store(&self, server: SocketAddr) -> Arc<dyn ClientSessionStore> {
        Arc::new(ConnectionTickets {
            store: self.tickets.clone(),
            server,
        })
    }

    /// The token store a connection to `server` uses.
    pub(crate) fn token_store(&self, server: SocketAddr) -> Arc<dyn quinn::TokenStore> {
        Arc::new(TokenStore {
            tokens: self.tokens.clone(),
            tickets: self.tickets.clone(),
            server,
        })
    }
}
