//! The password file: one `username:hash` line per user, the hash an
//! argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), `#`
//! comments and blank lines ignored — the layout of `mosquitto_passwd`
//! files, with argon2id instead of PBKDF2.
//!
//! [`PasswordFile`] parses and checks passwords without I/O;
//! [`hash_password`], [`PasswordFile::set`] and [`PasswordFile::remove`]
//! back the `quicmq passwd` subcommand, which keeps comments and order.
//!
//! ```
//! use quicmq_node::auth::password_file::{hash_password, PasswordFile};
//!
//! let mut file = PasswordFile::parse("# users\n").unwrap();
//! file.set("sensor-1", &hash_password(b"s3cret").unwrap()).unwrap();
//! let file = PasswordFile::parse(&file.to_text()).unwrap();
//! assert!(file.verify("sensor-1", b"s3cret"));
//! assert!(!file.verify("sensor-1", b"guess"));
//! assert!(!file.verify("nobody", b"s3cret"));
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::FileError;

/// Longest user name accepted (MQTT strings are at most 65535 bytes; a
/// password file has no use for names this long).
const MAX_USERNAME: usize = 1024;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("hashing the password failed: {0}")]
pub struct HashError(String);

/// One line of the file, kept for rewriting it.
#[derive(Debug, Clone)]
enum Line {
    /// A comment or blank line, verbatim.
    Other(String),
    /// A user entry.
    User { name: String, hash: String },
}

/// A parsed password file.
#[derive(Debug, Default)]
pub struct PasswordFile {
    lines: Vec<Line>,
    /// User name → index in `lines`.
    users: HashMap<String, usize>,
    /// Password checks run (a test hook: unknown users are checked too).
    checks: AtomicU64,
}

/// The argon2id parameters new hashes get: OWASP's minimum
/// recommendation (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// A hash of a fixed password with the default parameters: unknown users
/// are checked against it, so they take as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::encode_b64(b"quicmq-decoy-salt").unwrap_or_else(|_| {
            // 17 bytes always encode; never taken.
            SaltString::generate(&mut OsRng)
        });
        hasher()
            .hash_password(b"quicmq decoy password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Largest hash memory a [`HashMemory`] keeps between checks (64 MiB); a
/// hash that asks for more gets it for its check only.
const KEEP_BLOCKS: usize = 64 * 1024;

/// The memory argon2id works in (19 MiB for the default parameters), kept
/// by the thread that owns it from one check to the next, so that checking
/// passwords does not allocate and free tens of MiB each time (memory the
/// allocator may keep per thread and never give back).
#[derive(Debug, Default)]
pub struct HashMemory {
    blocks: Vec<Block>,
}

impl HashMemory {
    /// Bytes held now.
    pub fn held_bytes(&self) -> usize {
        self.blocks.len() * Block::SIZE
    }

    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.blocks.len() < count {
            self.blocks.resize(count, Block::default());
        }
        &mut self.blocks[..count]
    }

    fn trim(&mut self) {
        if self.blocks.len() > KEEP_BLOCKS {
            self.blocks = Vec::new();
        }
    }
}

/// Whether `password` hashes to the PHC string `hash` (argon2, any
/// parameters the string names), working in `memory`. The comparison is
/// constant-time.
fn verify_hash(hash: &str, password: &[u8], memory: &mut HashMemory) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(params), Some(expected), Some(salt)) =
        (Params::try_from(&parsed), parsed.hash, parsed.salt)
    else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let blocks = params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, version, params);
    let hashed = argon
        .hash_password_into_with_memory(password, salt, &mut *out, memory.blocks(blocks))
        .is_ok();
    memory.trim();
    // `Output`'s equality is constant-time.
    hashed && Output::new(out).is_ok_and(|out| out == expected)
}

/// Hashes `password` with argon2id and a random salt, as a PHC string.
///
/// # Errors
///
/// Only if argon2 refuses its own default parameters (not expected).
pub fn hash_password(password: &[u8]) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

fn check_username(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    if name.len() > MAX_USERNAME {
        return Err(format!("the user name is over {MAX_USERNAME} bytes"));
    }
    if name.contains(':') || name.chars().any(char::is_control) {
        return Err("a user name may not contain `:` or control characters".into());
    }
    Ok(())
}

fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| {
        format!("the hash is not a PHC string ({e}); create entries with `quicmq passwd`")
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "the hash uses {}, not argon2id; set the password again with `quicmq passwd`",
            parsed.algorithm
        ));
    }
    Ok(())
}

impl PasswordFile {
    /// Parses a password file.
    ///
    /// # Errors
    ///
    /// The first line that is not a comment, a blank line or a valid
    /// `username:argon2id-hash` entry, or a user named twice.
    pub fn parse(text: &str) -> Result<PasswordFile, FileError> {
        let mut file = PasswordFile::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                file.lines.push(Line::Other(raw.to_owned()));
                continue;
            }
            let err = |reason: String| FileError { line, reason };
            let Some((name, hash)) = trimmed.split_once(':') else {
                return Err(err("expected `username:hash`".into()));
            };
            check_username(name).map_err(err)?;
            check_hash(hash).map_err(err)?;
            if file.users.contains_key(name) {
                return Err(err(format!("user `{name}` is listed twice")));
            }
            file.users.insert(name.to_owned(), file.lines.len());
            file.lines.push(Line::User {
                name: name.to_owned(),
                hash: hash.to_owned(),
            });
        }
        Ok(file)
    }

    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    ///
    /// When it cannot be read (line 0) or does not parse.
    pub fn load(path: &std::path::Path) -> Result<PasswordFile, FileError> {
        PasswordFile::parse(&super::read_file(path)?)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file lists no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `name` is listed.
    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// Whether `password` is `name`'s. CPU-bound (one argon2id hash, tens
    /// of milliseconds): call it off the async runtime. An unknown user
    /// costs the same hash, against a decoy, so response time does not
    /// tell whether a user exists. Allocates the hash memory for this
    /// check alone; a node checks with [`PasswordFile::verify_in`] on its
    /// hash workers instead.
    pub fn verify(&self, name: &str, password: &[u8]) -> bool {
        self.verify_in(name, password, &mut HashMemory::default())
    }

    /// [`PasswordFile::verify`], working in `memory` (reused from one check
    /// to the next).
    pub fn verify_in(&self, name: &str, password: &[u8], memory: &mut HashMemory) -> bool {
        self.checks.fetch_add(1, Ordering::Relaxed);
        let stored = self.users.get(name).and_then(|&i| match &self.lines[i] {
            Line::User { hash, .. } => Some(hash.as_str()),
            Line::Other(_) => None,
        });
        let (hash, known) = match stored {
            Some(hash) => (hash, true),
            None => (decoy_hash(), false),
        };
        let matches = verify_hash(hash, password, memory);
        known && matches
    }

    /// Password checks run so far.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Adds `name` with `hash`, or replaces its hash in place.
    ///
    /// # Errors
    ///
    /// When the name or the hash is not valid in the file.
    pub fn set(&mut self, name: &str, hash: &str) -> Result<(), FileError> {
        let err = |reason| FileError { line: 0, reason };
        check_username(name).map_err(err)?;
        check_hash(hash).map_err(err)?;
        let entry = Line::User {
            name: name.to_owned(),
            hash: hash.to_owned(),
        };
        match self.users.get(name) {
            Some(&i) => self.lines[i] = entry,
            None => {
                self.users.insert(name.to_owned(), self.lines.len());
                self.lines.push(entry);
            }
        }
        Ok(())
    }

    /// Removes `name`; `false` if it was not listed.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(index) = self.users.remove(name) else {
            return false;
        };
        self.lines.remove(index);
        for i in self.users.values_mut() {
            if *i > index {
                *i -= 1;
            }
        }
        true
    }

    /// The file's text: comments and order kept.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Other(raw) => text.push_str(raw),
                Line::User { name, hash } => {
                    text.push_str(name);
                    text.push(':');
                    text.push_str(hash);
                }
            }
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_verify_and_comments_survive_a_rewrite() {
        let hash = hash_password(b"pw").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let text = format!("# fleet\n\nalice:{hash}\n  # end\n");
        let mut file = PasswordFile::parse(&text).unwrap();
        assert_eq!(file.len(), 1);
        assert!(file.verify("alice", b"pw"));
        assert!(!file.verify("alice", b"pW"));
        assert_eq!(file.to_text(), text);

        file.set("bob", &hash_password(b"b").unwrap()).unwrap();
        file.set("alice", &hash_password(b"new").unwrap()).unwrap();
        assert!(file.remove("bob"));
        assert!(!file.remove("bob"));
        let again = PasswordFile::parse(&file.to_text()).unwrap();
        assert!(again.verify("alice", b"new"));
        assert!(!again.contains("bob"));
        assert!(again.to_text().starts_with("# fleet\n\nalice:"));
    }

    #[test]
    fn unknown_users_cost_a_hash_check_like_wrong_passwords() {
        let file = PasswordFile::parse(&format!("a:{}\n", hash_password(b"x").unwrap())).unwrap();
        assert!(!file.verify("nobody", b"x"));
        assert!(!file.verify("a", b"y"));
        assert_eq!(file.checks(), 2);
    }

    #[test]
    fn bad_lines_name_their_number_and_the_fix() {
        let good = hash_password(b"x").unwrap();
        let cases = [
            ("just-a-name\n".to_string(), 1, "username:hash"),
            (format!("# c\n:{good}\n"), 2, "empty"),
            ("u:plaintext\n".to_string(), 1, "quicmq passwd"),
            (
                "u:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n".to_string(),
                1,
                "not argon2id",
            ),
            (format!("u:{good}\nu:{good}\n"), 2, "twice"),
            (format!("u\u{7}:{good}\n"), 1, "control"),
        ];
        for (text, line, words) in cases {
            let err = PasswordFile::parse(&text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn set_refuses_bad_names_and_hashes() {
        let mut file = PasswordFile::default();
        assert!(file.set("a:b", &hash_password(b"x").unwrap()).is_err());
        assert!(file.set("a", "nope").is_err());
        assert!(file.is_empty());
    }
}
