//! [`EndpointPool`]: QUIC client endpoints shared by many clients, spread
//! over several loopback addresses, so one process can hold ten thousand
//! connections (a socket per connection would be ten thousand sockets, and
//! one address has a limited port range).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// Loopback addresses the endpoints bind to (127.0.0.1 to 127.0.0.8: every
/// 127/8 address is local on Linux).
const ADDRESSES: u8 = 8;

/// Socket buffers for an endpoint: the server flights of all its clients'
/// handshakes can arrive at once.
const SOCKET_BUFFER: usize = 4 << 20;

/// Hands out client endpoints, `per_endpoint` connections each.
pub struct EndpointPool {
    per_endpoint: usize,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    current: Option<quinn::Endpoint>,
    used: usize,
    created: usize,
}

impl EndpointPool {
    /// A pool that puts `per_endpoint` connections on each endpoint; with
    /// 1 or less, [`EndpointPool::next`] hands out none (every connection
    /// binds its own).
    pub fn new(per_endpoint: usize) -> Arc<EndpointPool> {
        Arc::new(EndpointPool {
            per_endpoint,
            state: Mutex::default(),
        })
    }

    /// The endpoint for the next connection, binding a new one on the next
    /// loopback address when the current one is full.
    ///
    /// # Errors
    ///
    /// When a UDP socket cannot be bound.
    pub fn next(&self) -> std::io::Result<Option<quinn::Endpoint>> {
        if self.per_endpoint <= 1 {
            return Ok(None);
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.used >= self.per_endpoint || state.current.is_none() {
            let address = Ipv4Addr::new(
                127,
                0,
                0,
                1 + (state.created % usize::from(ADDRESSES)) as u8,
            );
            state.current = Some(bind(SocketAddr::new(IpAddr::V4(address), 0))?);
            state.created += 1;
            state.used = 0;
        }
        state.used += 1;
        Ok(state.current.clone())
    }

    /// Endpoints bound so far.
    pub fn created(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).created
    }
}

fn bind(address: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(address)?;
    let buffers = socket2::SockRef::from(&socket);
    // The kernel caps these at its maximum; smaller is still correct.
    let _ = buffers.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = buffers.set_send_buffer_size(SOCKET_BUFFER);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// The peak resident memory of this process (`VmHWM`), in bytes, where
/// `/proc` tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_fill_up_then_move_to_the_next_address() {
        let pool = EndpointPool::new(3);
        let mut addresses = Vec::new();
        for _ in 0..7 {
            let endpoint = pool.next().unwrap().expect("shared endpoints");
            addresses.push(endpoint.local_addr().unwrap());
        }
        assert_eq!(pool.created(), 3);
        assert_eq!(addresses[0], addresses[2]);
        assert_ne!(addresses[2], addresses[3]);
        assert_eq!(addresses[3].ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(EndpointPool::new(1).next().unwrap().is_none());
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
