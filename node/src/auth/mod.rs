//! Who may connect and what they may do: user names and passwords from a
//! [`PasswordFile`] (argon2id), anonymous clients only when
//! `allow_anonymous` says so, and an [`Acl`] for PUBLISH and SUBSCRIBE.
//!
//! [`Authenticator::check`] is the decision the CONNECT handler asks for;
//! it runs the password hash on the node's [`HashWorkers`] (a fixed number
//! of threads behind a bounded queue), backs off addresses and user names
//! after failed logins ([`LoginBackoff`]), counts outcomes
//! (`quicmq_auth_total{result}`) and logs failures at most a few times a
//! second ([`FailureLog`]). [`Authenticator::authorize`] answers the ACL
//! for each PUBLISH, will and SUBSCRIBE filter; [`Authenticator::reload`]
//! re-reads both files (SIGHUP, `POST /api/auth/reload`).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use quicmq_node::auth::{AuthDecision, Authenticator};
//!
//! let peer = "192.0.2.1".parse().unwrap();
//! let open = Authenticator::new(None, true);
//! assert!(matches!(open.check(peer, None, None).await, AuthDecision::Allowed { .. }));
//! let closed = Authenticator::new(None, false);
//! assert_eq!(closed.check(peer, None, None).await, AuthDecision::NotAuthorized);
//! # });
//! ```

pub mod acl;
mod hash_workers;
pub mod login_backoff;
pub mod password_file;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use acl::{Access, Acl};
pub use hash_workers::{CheckPriority, HashWorkers, WorkersBusy};
pub use login_backoff::{BackoffSettings, LoginBackoff};
pub use password_file::{hash_password, PasswordFile};

/// A line of a password file or an ACL file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct FileError {
    /// 1-based line number (0: not about one line, e.g. unreadable).
    pub line: usize,
    /// What is wrong, and how to fix it.
    pub reason: String,
}

impl FileError {
    fn describe(&self) -> String {
        if self.line == 0 {
            self.reason.clone()
        } else {
            format!("line {}: {}", self.line, self.reason)
        }
    }
}

/// The text of the file at `path` (line 0 errors when unreadable).
fn read_file(path: &std::path::Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError {
        line: 0,
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

/// What the broker answers a CONNECT's credentials with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Connect; `username` is the authenticated name (`None`: anonymous).
    Allowed {
        /// The user the client proved to be, if any.
        username: Option<String>,
    },
    /// Wrong user name or password: CONNACK 0x86 (3.1.1: return code 4).
    BadCredentials,
    /// No credentials where they are required: CONNACK 0x87 (3.1.1:
    /// return code 5).
    NotAuthorized,
    /// Not checked: every password worker is busy and the queue is full,
    /// or the address backs off after failed logins. CONNACK 0x89 Server
    /// busy (3.1.1: 3, Server unavailable); nothing was spent on it.
    Busy,
}

/// How much password work a node does at once, and the back-off after
/// failed logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// argon2id checks running at once (`max_concurrent_auth`).
    pub max_concurrent: usize,
    /// Checks waiting for a worker (`auth_queue`); beyond it, Server busy.
    pub queue: usize,
    /// Back-off after failed logins.
    pub backoff: BackoffSettings,
}

/// Default `auth_queue`.
pub const DEFAULT_AUTH_QUEUE: usize = 256;

impl Default for AuthLimits {
    /// One check per CPU core, 256 waiting, the default back-off.
    fn default() -> Self {
        AuthLimits {
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue: DEFAULT_AUTH_QUEUE,
            backoff: BackoffSettings::default(),
        }
    }
}

/// The node's authentication rules; reloadable.
#[derive(Debug)]
pub struct Authenticator {
    passwords: RwLock<Option<Arc<PasswordFile>>>,
    acl: RwLock<Arc<Acl>>,
    allow_anonymous: bool,
    /// Where [`Authenticator::reload`] reads from.
    password_path: Option<PathBuf>,
    acl_path: Option<PathBuf>,
    log: FailureLog,
    limits: AuthLimits,
    /// Started with the first password check.
    workers: OnceLock<HashWorkers>,
    backoff: LoginBackoff,
}

/// The texts of a password file and an ACL file (`None`: not used), as a
/// node read them or as the cluster holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthTexts {
    /// The password file.
    pub passwords: Option<String>,
    /// The ACL file.
    pub acl: Option<String>,
}

/// Parses both texts; `describe(which, error)` words an error.
fn parse(
    texts: &AuthTexts,
    describe: impl Fn(&str, FileError) -> String,
) -> Result<(Option<PasswordFile>, Acl), String> {
    let passwords = texts
        .passwords
        .as_deref()
        .map(PasswordFile::parse)
        .transpose()
        .map_err(|e| describe("password_file", e))?;
    let acl = match texts.acl.as_deref() {
        Some(text) => Acl::parse(text).map_err(|e| describe("acl_file", e))?,
        None => Acl::default(),
    };
    Ok((passwords, acl))
}

/// What a reload read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// Users in the password file (0 without one).
    pub users: usize,
    /// Rules in the ACL (0 without one: everything allowed).
    pub rules: usize,
}

impl Authenticator {
    /// Rules from a password file (`None`: no user names are checked) and
    /// whether clients without a user name may connect.
    pub fn new(passwords: Option<PasswordFile>, allow_anonymous: bool) -> Authenticator {
        Authenticator {
            passwords: RwLock::new(passwords.map(Arc::new)),
            acl: RwLock::new(Arc::new(Acl::default())),
            allow_anonymous,
            password_path: None,
            acl_path: None,
            log: FailureLog::new(Duration::from_secs(10), 5),
            limits: AuthLimits::default(),
            workers: OnceLock::new(),
            backoff: LoginBackoff::new(BackoffSettings::default()),
        }
    }

    /// The same rules with `limits` on password work and failed logins.
    pub fn with_limits(mut self, limits: AuthLimits) -> Authenticator {
        self.limits = limits;
        self.workers = OnceLock::new();
        self.backoff = LoginBackoff::new(limits.backoff);
        self
    }

    fn workers(&self) -> &HashWorkers {
        self.workers
            .get_or_init(|| HashWorkers::new(self.limits.max_concurrent, self.limits.queue))
    }

    /// Reads the password file and the ACL file (either may be absent) and
    /// remembers them for [`Authenticator::reload`].
    ///
    /// # Errors
    ///
    /// Which file is unusable, with its line and the fix.
    pub fn from_files(
        password_file: Option<PathBuf>,
        acl_file: Option<PathBuf>,
        allow_anonymous: bool,
    ) -> Result<Authenticator, String> {
        let mut auth = Authenticator::new(None, allow_anonymous);
        auth.password_path = password_file;
        auth.acl_path = acl_file;
        auth.reload()?;
        Ok(auth)
    }

    /// Re-reads the files it was made from and applies them; all or
    /// nothing (an unusable file keeps the rules in force). Connected
    /// clients stay; the new rules apply to their next PUBLISH and
    /// SUBSCRIBE. (In a cluster the node pushes [`Authenticator::read_files`]
    /// through Raft instead, and every node applies the cluster's texts.)
    ///
    /// # Errors
    ///
    /// Which file is unusable, with its line and the fix.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let texts = self.read_files()?;
        self.apply(&texts)
    }

    /// Whether a password file or an ACL file is configured on this node.
    pub fn has_files(&self) -> bool {
        self.password_path.is_some() || self.acl_path.is_some()
    }

    /// The texts of the configured files, checked.
    ///
    /// # Errors
    ///
    /// Which file is unreadable or unusable, with its line and the fix.
    pub fn read_files(&self) -> Result<AuthTexts, String> {
        let read = |key: &str, path: &Option<PathBuf>| -> Result<Option<String>, String> {
            path.as_ref()
                .map(|path| read_file(path).map_err(|e| format!("{key}: {e}")))
                .transpose()
        };
        let texts = AuthTexts {
            passwords: read("password_file", &self.password_path)?,
            acl: read("acl_file", &self.acl_path)?,
        };
        parse(&texts, |what, e| {
            match (what, &self.password_path, &self.acl_path) {
                ("password_file", Some(path), _) | ("acl_file", _, Some(path)) => {
                    format!("{what} {}: {e}", path.display())
                }
                _ => format!("{what}: {e}"),
            }
        })?;
        Ok(texts)
    }

    /// Puts `texts` in force (a text that is `None`: no password file, or
    /// no ACL); all or nothing.
    ///
    /// # Errors
    ///
    /// Which text does not parse, with its line.
    pub fn apply(&self, texts: &AuthTexts) -> Result<Reloaded, String> {
        let (passwords, acl) = parse(texts, |what, e| format!("{what}: {e}"))?;
        let reloaded = Reloaded {
            users: passwords.as_ref().map_or(0, PasswordFile::len),
            rules: acl.len(),
        };
        *self.passwords.write().unwrap_or_else(|p| p.into_inner()) = passwords.map(Arc::new);
        self.set_acl(acl);
        Ok(reloaded)
    }

    /// Rules in the ACL in force.
    pub fn acl_rules(&self) -> usize {
        self.acl.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Replaces the ACL.
    pub fn set_acl(&self, acl: Acl) {
        *self.acl.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(acl);
    }

    /// Whether the client may publish to topic `target` or subscribe to
    /// filter `target`; denials are counted
    /// (`quicmq_acl_denied_total{access}`).
    pub fn authorize(
        &self,
        username: Option<&str>,
        client_id: &str,
        access: Access,
        target: &str,
    ) -> bool {
        let acl = self.acl.read().unwrap_or_else(|p| p.into_inner()).clone();
        let allowed = acl.check(
            &acl::Client {
                username,
                client_id,
            },
            access,
            target,
        );
        if !allowed {
            let access = match access {
                Access::Publish => "publish",
                Access::Subscribe => "subscribe",
                Access::Read => "read",
            };
            metrics::counter!(crate::metrics::ACL_DENIED, "access" => access).increment(1);
        }
        allowed
    }

    /// The ACL in force now, for checks of many deliveries at once.
    pub fn acl(&self) -> Arc<Acl> {
        self.acl.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the client may take over sessions of other identities (ACL
    /// `session_takeover=any`).
    pub fn may_take_over(&self, username: Option<&str>, client_id: &str) -> bool {
        let acl = self.acl.read().unwrap_or_else(|p| p.into_inner()).clone();
        acl.may_take_over(&acl::Client {
            username,
            client_id,
        })
    }

    /// Whether clients without credentials may connect.
    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// The users in the password file (0 without one).
    pub fn user_count(&self) -> usize {
        self.passwords().map_or(0, |p| p.len())
    }

    /// Replaces the password file (a reload); connected clients stay.
    pub fn set_passwords(&self, passwords: PasswordFile) {
        *self.passwords.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(passwords));
    }

    fn passwords(&self) -> Option<Arc<PasswordFile>> {
        self.passwords
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Decides on a CONNECT's user name and password, from `peer`.
    ///
    /// - A user name with a password file: the password must match. The
    ///   check waits for a hash worker; with every worker busy and the
    ///   queue full, or while `peer` backs off after failed logins, the
    ///   answer is [`AuthDecision::Busy`] at once.
    /// - A user name without a password file: accepted as given only
    ///   while anonymous clients are allowed (nothing checks it).
    /// - No user name: allowed only with `allow_anonymous`.
    pub async fn check(
        &self,
        peer: IpAddr,
        username: Option<&str>,
        password: Option<&Bytes>,
    ) -> AuthDecision {
        let mut result = None;
        let decision = match (username, self.passwords()) {
            (Some(name), Some(file)) => {
                if self
                    .backoff
                    .admit(peer, Some(name), Instant::now())
                    .is_err()
                {
                    result = Some("backoff");
                    AuthDecision::Busy
                } else {
                    let password = password.map(|p| p.to_vec()).unwrap_or_default();
                    let priority = if self.backoff.has_failed(peer, Instant::now()) {
                        CheckPriority::Suspect
                    } else {
                        CheckPriority::Clean
                    };
                    match self.workers().verify(file, name, password, priority).await {
                        Ok(true) => {
                            self.backoff.succeeded(peer, Some(name));
                            AuthDecision::Allowed {
                                username: Some(name.to_owned()),
                            }
                        }
                        Ok(false) => {
                            self.backoff.failed(peer, Some(name), Instant::now());
                            AuthDecision::BadCredentials
                        }
                        Err(WorkersBusy) => AuthDecision::Busy,
                    }
                }
            }
            (Some(name), None) if self.allow_anonymous => AuthDecision::Allowed {
                username: Some(name.to_owned()),
            },
            (None, _) if self.allow_anonymous => AuthDecision::Allowed { username: None },
            _ => AuthDecision::NotAuthorized,
        };
        let result = result.unwrap_or(match &decision {
            AuthDecision::Allowed { .. } => "allowed",
            AuthDecision::BadCredentials => "bad_credentials",
            AuthDecision::NotAuthorized => "not_authorized",
            AuthDecision::Busy => "busy",
        });
        metrics::counter!(crate::metrics::AUTH, "result" => result).increment(1);
        decision
    }

    /// Logs a refused login, at most a few lines per interval (a password
    /// guesser must not flood the log); the rest are counted and summed up
    /// in the next line.
    pub fn log_failure(&self, peer: &str, username: Option<&str>, decision: &AuthDecision) {
        if let Some(suppressed) = self.log.admit() {
            tracing::warn!(
                peer,
                username = username.unwrap_or(""),
                ?decision,
                suppressed,
                "login refused"
            );
        }
    }
}

/// At most `burst` lines per `interval`; says how many were held back.
#[derive(Debug)]
pub struct FailureLog {
    interval: Duration,
    burst: u32,
    state: Mutex<(Instant, u32, u64)>,
}

impl FailureLog {
    /// A limiter of `burst` lines per `interval`.
    pub fn new(interval: Duration, burst: u32) -> FailureLog {
        FailureLog {
            interval,
            burst,
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// `Some(suppressed since the last line)` when a line may be written
    /// now, `None` when it must be held back.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (since, written, suppressed) = &mut *state;
        if now.duration_since(*since) >= self.interval {
            *since = now;
            *written = 0;
        }
        if *written < self.burst {
            *written += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn with_user() -> Authenticator {
        let mut file = PasswordFile::default();
        file.set("alice", &hash_password(b"pw").unwrap()).unwrap();
        Authenticator::new(Some(file), false)
    }

    #[tokio::test]
    async fn the_decision_matrix() {
        let pw = Bytes::from_static(b"pw");
        let wrong = Bytes::from_static(b"no");
        let auth = with_user();
        assert_eq!(
            auth.check(PEER, Some("alice"), Some(&pw)).await,
            AuthDecision::Allowed {
                username: Some("alice".into())
            }
        );
        assert_eq!(
            auth.check(PEER, Some("alice"), Some(&wrong)).await,
            AuthDecision::BadCredentials
        );
        assert_eq!(
            auth.check(PEER, Some("alice"), None).await,
            AuthDecision::BadCredentials
        );
        assert_eq!(
            auth.check(PEER, Some("mallory"), Some(&pw)).await,
            AuthDecision::BadCredentials
        );
        assert_eq!(
            auth.check(PEER, None, None).await,
            AuthDecision::NotAuthorized
        );

        let open = Authenticator::new(None, true);
        assert_eq!(
            open.check(PEER, Some("anyone"), None).await,
            AuthDecision::Allowed {
                username: Some("anyone".into())
            }
        );
        let closed = Authenticator::new(None, false);
        assert_eq!(
            closed.check(PEER, Some("anyone"), Some(&pw)).await,
            AuthDecision::NotAuthorized
        );
    }

    #[tokio::test]
    async fn a_reload_changes_who_gets_in() {
        let auth = with_user();
        let mut file = PasswordFile::default();
        file.set("bob", &hash_password(b"b").unwrap()).unwrap();
        auth.set_passwords(file);
        let b = Bytes::from_static(b"b");
        assert!(matches!(
            auth.check(PEER, Some("bob"), Some(&b)).await,
            AuthDecision::Allowed { .. }
        ));
        assert_eq!(
            auth.check(PEER, Some("alice"), Some(&Bytes::from_static(b"pw")))
                .await,
            AuthDecision::BadCredentials
        );
    }

    #[test]
    fn failure_lines_are_rate_limited_and_count_what_was_held_back() {
        let log = FailureLog::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert_eq!(log.admit_at(t0), Some(0));
        assert_eq!(log.admit_at(t0), Some(0));
        assert_eq!(log.admit_at(t0), None);
        assert_eq!(log.admit_at(t0), None);
        assert_eq!(log.admit_at(t0 + Duration::from_secs(11)), Some(2));
    }

    #[tokio::test]
    async fn failed_logins_back_off_the_address_not_the_user() {
        let auth = with_user().with_limits(AuthLimits {
            max_concurrent: 1,
            queue: 4,
            backoff: BackoffSettings {
                after: 2,
                initial: Duration::from_secs(30),
                max: Duration::from_secs(60),
            },
        });
        let wrong = Bytes::from_static(b"no");
        let pw = Bytes::from_static(b"pw");
        for _ in 0..2 {
            assert_eq!(
                auth.check(PEER, Some("alice"), Some(&wrong)).await,
                AuthDecision::BadCredentials
            );
        }
        // The guessing address waits, even with the right password…
        assert_eq!(
            auth.check(PEER, Some("alice"), Some(&pw)).await,
            AuthDecision::Busy
        );
        // …alice elsewhere does not.
        let home = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));
        assert!(matches!(
            auth.check(home, Some("alice"), Some(&pw)).await,
            AuthDecision::Allowed { .. }
        ));
    }
}
