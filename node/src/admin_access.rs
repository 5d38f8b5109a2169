//! Who may use the admin HTTP endpoint (sans-IO). With a bearer token
//! configured (`admin_token_file`) or the endpoint on TLS with client
//! certificates of the cluster CA (`admin_mtls`), every request but those
//! to the open paths (`admin_open_paths`: by default `/metrics`,
//! `/health/live` and `/health/ready`) must carry
//! `Authorization: Bearer TOKEN` or come over a connection that showed an
//! admin certificate (role `quicmq-admin`). The token is compared in
//! constant time (as SHA-256 digests, so neither its content nor its
//! length leaks through timing). With neither, the endpoint is open, which
//! the node allows only on a loopback address.
//!
//! ```
//! use quicmq_node::admin_access::AdminAccess;
//!
//! let access = AdminAccess::new(Some("0123456789abcdef0123".into()), AdminAccess::default_open_paths());
//! assert!(access.allows("/metrics", None, false));
//! assert!(!access.allows("/api/cluster/status", None, false));
//! assert!(!access.allows("/api/cluster/status", Some("Bearer guess"), false));
//! assert!(access.allows("/api/cluster/status", Some("Bearer 0123456789abcdef0123"), false));
//! let mtls = AdminAccess::new(None, AdminAccess::default_open_paths()).with_mtls(true);
//! assert!(!mtls.allows("/api/cluster/status", None, false));
//! assert!(mtls.allows("/api/cluster/status", None, true));
//! ```

use std::path::Path;

use aws_lc_rs::digest::{digest, SHA256};

/// The paths that may be left open (no token needed).
pub const OPENABLE_PATHS: [&str; 3] = ["/metrics", "/health/live", "/health/ready"];

/// `/metrics`, `/health/live` and `/health/ready`: the default
/// `admin_open_paths`.
pub fn default_open_paths() -> Vec<String> {
    OPENABLE_PATHS.iter().map(|p| p.to_string()).collect()
}

/// Shortest token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// The admin endpoint's access rule.
#[derive(Clone)]
pub struct AdminAccess {
    /// SHA-256 of the token, if one is required.
    token_digest: Option<Vec<u8>>,
    /// Whether admin certificates are the (other) credential.
    mtls: bool,
    open_paths: Vec<String>,
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccess")
            .field("token", &self.token_digest.as_ref().map(|_| "(set)"))
            .field("mtls", &self.mtls)
            .field("open_paths", &self.open_paths)
            .finish()
    }
}

impl AdminAccess {
    /// A rule requiring `token` (none: everything open) except on
    /// `open_paths`.
    pub fn new(token: Option<String>, open_paths: Vec<String>) -> AdminAccess {
        AdminAccess {
            token_digest: token.map(|t| digest(&SHA256, t.as_bytes()).as_ref().to_vec()),
            mtls: false,
            open_paths,
        }
    }

    /// The same rule, with admin certificates as a credential when
    /// `mtls` (the endpoint serves TLS, `admin_mtls`).
    pub fn with_mtls(mut self, mtls: bool) -> AdminAccess {
        self.mtls = mtls;
        self
    }

    /// `/metrics`, `/health/live` and `/health/ready`.
    pub fn default_open_paths() -> Vec<String> {
        default_open_paths()
    }

    /// Whether requests need a credential (a token or an admin
    /// certificate) beyond the open paths.
    pub fn requires_credentials(&self) -> bool {
        self.token_digest.is_some() || self.mtls
    }

    /// Whether a request for `path` with the `Authorization` header
    /// `authorization` (if any), on a connection that showed an admin
    /// certificate of the cluster CA or not (`admin_cert`), may be served.
    pub fn allows(&self, path: &str, authorization: Option<&str>, admin_cert: bool) -> bool {
        if !self.requires_credentials() || self.open_paths.iter().any(|open| open == path) {
            return true;
        }
        if admin_cert && self.mtls {
            return true;
        }
        let Some(expected) = &self.token_digest else {
            return false;
        };
        let Some(given) = authorization.and_then(bearer) else {
            return false;
        };
        let given = digest(&SHA256, given.as_bytes());
        aws_lc_rs::constant_time::verify_slices_are_equal(given.as_ref(), expected).is_ok()
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The token in the file at `path`: its first line, trimmed.
///
/// # Errors
///
/// When the file cannot be read, or its token is shorter than
/// [`MIN_TOKEN_LEN`] or contains a space or control character; the text
/// says how to fix it.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    check_token(token).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(token.to_owned())
}

fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is {} bytes; use at least {MIN_TOKEN_LEN} random characters (`quicmq token new FILE` writes one)",
            token.len()
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "the token contains a space or control character; write it on one line without spaces"
                .into(),
        );
    }
    Ok(())
}

/// A new random token: 32 random bytes in hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    quicmq_proto::hex::encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_token_everything_is_open() {
        let open = AdminAccess::new(None, vec![]);
        assert!(!open.requires_credentials());
        assert!(open.allows("/api/cluster/leave", None, false));
    }

    #[test]
    fn with_a_token_only_the_open_paths_are_open() {
        let token = "t".repeat(20);
        let access = AdminAccess::new(Some(token.clone()), vec!["/health/live".into()]);
        assert!(access.allows("/health/live", None, false));
        for path in [
            "/metrics",
            "/api/cluster/status",
            "/api/auth/reload",
            "/health/live/x",
        ] {
            assert!(!access.allows(path, None, false), "{path}");
            assert!(!access.allows(path, Some("Bearer wrong"), false), "{path}");
            assert!(
                !access.allows(path, Some(&token), false),
                "{path}: no scheme"
            );
            assert!(
                !access.allows(path, Some(&format!("Basic {token}")), false),
                "{path}"
            );
            assert!(
                !access.allows(path, Some(&format!("Bearer {token}x")), false),
                "{path}"
            );
            assert!(
                access.allows(path, Some(&format!("Bearer {token}")), false),
                "{path}"
            );
            assert!(
                access.allows(path, Some(&format!("bearer  {token} ")), false),
                "{path}"
            );
        }
    }

    #[test]
    fn token_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{}\n", new_token())).unwrap();
        assert_eq!(read_token_file(&file).unwrap().len(), 64);
        std::fs::write(&file, "short\n").unwrap();
        assert!(read_token_file(&file).unwrap_err().contains("at least 16"));
        std::fs::write(&file, "0123456789 abcdefgh\n").unwrap();
        assert!(read_token_file(&file).unwrap_err().contains("space"));
        assert!(read_token_file(&dir.path().join("missing"))
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn with_mtls_an_admin_certificate_or_the_token_will_do() {
        let token = "t".repeat(20);
        let access = AdminAccess::new(Some(token.clone()), default_open_paths()).with_mtls(true);
        assert!(access.allows("/api/cluster/leave", None, true));
        assert!(access.allows(
            "/api/cluster/leave",
            Some(&format!("Bearer {token}")),
            false
        ));
        assert!(!access.allows("/api/cluster/leave", None, false));
        assert!(access.allows("/metrics", None, false));
        let certs_only = AdminAccess::new(None, vec![]).with_mtls(true);
        assert!(certs_only.requires_credentials());
        assert!(!certs_only.allows("/metrics", None, false));
        assert!(!certs_only.allows("/metrics", Some("Bearer x"), false));
        // An admin certificate counts only where mTLS is on.
        let token_only = AdminAccess::new(Some(token), vec![]);
        assert!(!token_only.allows("/api/cluster/leave", None, true));
    }
}
