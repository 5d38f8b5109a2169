//! The send quota of MQTT 5.0 flow control (§4.9), sans-IO.
//!
//! The server's Receive Maximum (from CONNACK, 65,535 when absent) caps
//! how many QoS 1 and QoS 2 PUBLISH packets the client may have
//! unacknowledged at once. A slot is taken when such a PUBLISH is sent and
//! given back on PUBACK, on PUBCOMP, or on a PUBREC with an error code.

/// Counts QoS > 0 publishes in flight against the server's Receive Maximum.
#[derive(Debug, Clone)]
pub(crate) struct SendQuota {
    maximum: u16,
    in_flight: u16,
}

impl SendQuota {
    /// A quota of `maximum` in-flight publishes (at least one).
    pub(crate) fn new(maximum: u16) -> SendQuota {
        SendQuota {
            maximum: maximum.max(1),
            in_flight: 0,
        }
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_acquire(&mut self) -> bool {
        if self.in_flight < self.maximum {
            self.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// Gives a slot back.
    pub(crate) fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Publishes in flight now.
    pub(crate) fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// The server's Receive Maximum in force.
    #[cfg(test)]
    pub(crate) fn maximum(&self) -> u16 {
        self.maximum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_flight_at_the_maximum() {
        let mut quota = SendQuota::new(2);
        assert!(quota.try_acquire());
        assert!(quota.try_acquire());
        assert!(!quota.try_acquire());
        assert_eq!(quota.in_flight(), 2);
        quota.release();
        assert!(quota.try_acquire());
        assert!(!quota.try_acquire());
    }

    #[test]
    fn zero_means_one_and_release_never_underflows() {
        let mut quota = SendQuota::new(0);
        assert_eq!(quota.maximum(), 1);
        quota.release();
        assert_eq!(quota.in_flight(), 0);
        assert!(quota.try_acquire());
        assert!(!quota.try_acquire());
    }
}
