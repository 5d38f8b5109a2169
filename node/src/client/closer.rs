//! A one-shot "closed, and why" signal that any number of tasks can wait on.

use tokio::sync::watch;

/// Set once with an optional reason; waiters wake when it is set.
#[derive(Debug)]
pub(crate) struct Closer {
    tx: watch::Sender<Option<Option<String>>>,
}

impl Closer {
    /// Not closed yet.
    pub(crate) fn new() -> Closer {
        Closer {
            tx: watch::channel(None).0,
        }
    }

    /// Closes with `reason` (`None` = normal close); returns `false` (and
    /// keeps the first reason) when already closed.
    pub(crate) fn close(&self, reason: Option<String>) -> bool {
        self.tx.send_if_modified(|state| {
            if state.is_some() {
                false
            } else {
                *state = Some(reason);
                true
            }
        })
    }

    /// Whether it is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.borrow().is_some()
    }

    /// `Some(reason)` once closed.
    pub(crate) fn reason(&self) -> Option<Option<String>> {
        self.tx.borrow().clone()
    }

    /// A handle to wait on.
    pub(crate) fn watch(&self) -> CloseWatch {
        CloseWatch {
            rx: self.tx.subscribe(),
        }
    }
}

/// Waits for a [`Closer`] to close.
pub(crate) struct CloseWatch {
    rx: watch::Receiver<Option<Option<String>>>,
}

impl CloseWatch {
    /// Completes once closed (at once if it already is). Cancel-safe.
    pub(crate) async fn closed(&mut self) {
        // The sender lives in the Closer, which outlives its watchers in
        // practice; if it is gone, treat that as closed too.
        let _ = self.rx.wait_for(Option::is_some).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_waiters_wake() {
        let closer = Closer::new();
        let mut watch = closer.watch();
        assert!(!closer.is_closed());
        let waiter = tokio::spawn(async move { watch.closed().await });
        assert!(closer.close(Some("boom".into())));
        assert!(!closer.close(None));
        waiter.await.unwrap();
        assert_eq!(closer.reason(), Some(Some("boom".into())));
        // A watcher made after the close completes at once.
        closer.watch().closed().await;
    }
}
