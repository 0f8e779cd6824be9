//! [`Users`]: who may connect and what each may do.
//!
//! A user has a name, credentials (a token, of which the config stores only the SHA-256
//! digest, or the common name of a client certificate verified by mutual TLS) and permissions
//! on topic patterns (`orders`, `orders.*`, `*`): `publish`, `consume` (optionally only in
//! groups matching a pattern), `admin` (create and delete topics, delete groups) and
//! `stats`. A login is found by the digest of the token the client sent and confirmed by a
//! constant-time comparison, so it costs the same microseconds whoever sends it. A
//! dead-letter topic `<t>.dlq` follows the permissions of `<t>` unless a pattern names it.
//! `--auth-token` is one user, `admin`, with every permission.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use mq_core::{GroupName, TopicName};

/// What a user may do on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Publish to it.
    Publish,
    /// Subscribe to it (in the permission's groups).
    Consume,
    /// Create or delete it, delete its groups.
    Admin,
    /// Describe it and read its stats.
    Stats,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Consume => "consume",
            Action::Admin => "admin",
            Action::Stats => "stats",
        }
    }
}

/// One permission of a user, as the config file writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// A topic name, `prefix.*`, or `*`.
    pub topics: String,
    /// What it allows.
    pub actions: Vec<Action>,
    /// For `consume`: the groups allowed (a name, `prefix*`, or `*`); every group when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<String>,
}

/// One user, as the config file writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The name logs and refusals use.
    pub name: String,
    /// The SHA-256 digest of the user's token, in hex (`mq-server new-token` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// The common name (CN) of the subject of the client certificate that logs in as this
    /// user (mutual TLS, `--tls-client-ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_cn: Option<String>,
    /// What the user may do.
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// Whether `name` matches `pattern`: the name itself, `prefix.*` (anything below
/// `prefix.`), a trailing `*` (any name starting with the rest), or `*`.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name.
    pub name: String,
    permissions: Vec<Permission>,
}

impl User {
    /// A user with every permission.
    pub fn all(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            permissions: vec![Permission {
                topics: "*".into(),
                actions: vec![
                    Action::Publish,
                    Action::Consume,
                    Action::Admin,
                    Action::Stats,
                ],
                groups: None,
            }],
        }
    }

    fn allows_exactly(&self, action: Action, topic: &str, group: Option<&str>) -> Option<bool> {
        let mut named = false;
        for p in self
            .permissions
            .iter()
            .filter(|p| matches(&p.topics, topic))
        {
            named = true;
            let group_ok = match (action, &p.groups, group) {
                (Action::Consume, Some(pattern), Some(g)) => matches(pattern, g),
                (Action::Consume, Some(_), None) => false,
                _ => true,
            };
            if p.actions.contains(&action) && group_ok {
                return Some(true);
            }
        }
        named.then_some(false)
    }

    /// Whether the user may do `action` on `topic` (in `group`, for `consume`).
    pub fn allows(&self, action: Action, topic: &TopicName, group: Option<&GroupName>) -> bool {
        let group = group.map(GroupName::as_str);
        match self.allows_exactly(action, topic.as_str(), group) {
            Some(allowed) => allowed,
            // A dead-letter topic no pattern names follows its topic.
            None => topic
                .dead_letter_of()
                .and_then(|base| self.allows_exactly(action, base.as_str(), group))
                .unwrap_or(false),
        }
    }

    /// Whether the user may do `action` on every topic (a `*` permission).
    pub fn allows_everywhere(&self, action: Action) -> bool {
        self.permissions
            .iter()
            .any(|p| p.topics == "*" && p.actions.contains(&action))
    }

    /// The refusal message for `action` on `topic`.
    pub fn refusal(&self, action: Action, topic: &TopicName) -> String {
        format!(
            "user \"{}\" may not {} on topic \"{topic}\": ask for that permission in the \
             server's users",
            self.name,
            action.as_str()
        )
    }
}

/// Who may connect: users by the digest of their token and by the common name of their
/// client certificate.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_digest: HashMap<[u8; 32], User>,
    by_certificate: HashMap<String, User>,
}

/// How a connection logged in; the user is looked up by it again for every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// By the token with this digest.
    Token([u8; 32]),
    /// By a client certificate with this common name.
    Certificate(String),
}

/// The users a running server knows, replaced whole on a reload: a connection looks its
/// user up again for every request, so a reload applies to established connections too.
#[derive(Debug, Clone, Default)]
pub struct UsersHandle(Arc<RwLock<Arc<Users>>>);

impl UsersHandle {
    /// A handle on `users`.
    pub fn new(users: Users) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(users))))
    }

    /// The users now.
    pub fn current(&self) -> Arc<Users> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the users (a reload).
    pub fn replace(&self, users: Users) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(users);
    }
}

/// The SHA-256 digest of `token`.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

impl Users {
    /// The users of the config, and `--auth-token` as user `admin` with every permission.
    ///
    /// # Errors
    /// When a digest is not 64 hex digits.
    pub fn new(users: &[UserConfig], auth_token: Option<&str>) -> anyhow::Result<Self> {
        let mut by_digest = HashMap::new();
        let mut by_certificate = HashMap::new();
        for u in users {
            let user = User {
                name: u.name.clone(),
                permissions: u.permissions.clone(),
            };
            if u.token_sha256.is_none() && u.certificate_cn.is_none() {
                anyhow::bail!(
                    "user \"{}\" has no credentials: give it token_sha256 (mq-server new-token \
                     prints one) or certificate_cn",
                    u.name
                );
            }
            if let Some(hex) = &u.token_sha256 {
                let digest = from_hex(hex).ok_or_else(|| {
                    anyhow::anyhow!(
                        "user \"{}\": token_sha256 must be 64 hex digits (mq-server new-token prints it)",
                        u.name
                    )
                })?;
                by_digest.insert(digest, user.clone());
            }
            if let Some(cn) = &u.certificate_cn
                && by_certificate.insert(cn.clone(), user).is_some()
            {
                anyhow::bail!("two users have certificate_cn \"{cn}\": give each its own");
            }
        }
        if let Some(token) = auth_token {
            by_digest.insert(digest(token), User::all("admin"));
        }
        Ok(Self {
            by_digest,
            by_certificate,
        })
    }

    /// Whether anyone must log in.
    pub fn required(&self) -> bool {
        !self.by_digest.is_empty() || !self.by_certificate.is_empty()
    }

    /// The user of `login`.
    pub fn find(&self, login: &Login) -> Option<&User> {
        match login {
            Login::Token(digest) => self.by_digest.get(digest),
            Login::Certificate(cn) => self.by_certificate.get(cn),
        }
    }

    /// The user whose client certificate has the common name `cn`.
    pub fn by_certificate(&self, cn: &str) -> Option<&User> {
        self.by_certificate.get(cn)
    }

    /// The user whose token is `token`.
    pub fn login(&self, token: &str) -> Option<&User> {
        let sent = digest(token);
        let (stored, user) = self.by_digest.get_key_value(&sent)?;
        // The map found it by digest; comparing every byte keeps the time the same.
        let same = stored
            .iter()
            .zip(sent.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        same.then_some(user)
    }
}

/// A new token: 32 random bytes in hex.
///
/// # Errors
/// When the system has no randomness to give.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn topic(t: &str) -> TopicName {
        TopicName::new(t).unwrap()
    }

    #[test]
    fn patterns_grant_what_they_name_and_dead_letters_follow_their_topic() {
        let user = User {
            name: "billing".into(),
            permissions: vec![
                Permission {
                    topics: "orders.*".into(),
                    actions: vec![Action::Consume],
                    groups: Some("billing-*".into()),
                },
                Permission {
                    topics: "audit".into(),
                    actions: vec![Action::Publish],
                    groups: None,
                },
            ],
        };
        let g = |n: &str| GroupName::new(n).unwrap();
        assert!(user.allows(Action::Consume, &topic("orders.eu"), Some(&g("billing-1"))));
        assert!(!user.allows(Action::Consume, &topic("orders.eu"), Some(&g("other"))));
        assert!(!user.allows(Action::Publish, &topic("orders.eu"), None));
        assert!(user.allows(Action::Publish, &topic("audit"), None));
        assert!(!user.allows(Action::Publish, &topic("audits"), None));
        assert!(user.allows(
            Action::Consume,
            &topic("orders.eu.dlq"),
            Some(&g("billing-2"))
        ));
        assert!(!user.allows(Action::Stats, &topic("audit"), None));
    }

    #[test]
    fn a_login_finds_its_user_by_the_token_digest() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 64);
        let hex: String = digest(&token).iter().map(|b| format!("{b:02x}")).collect();
        let users = Users::new(
            &[UserConfig {
                name: "u".into(),
                token_sha256: Some(hex),
                certificate_cn: None,
                permissions: Vec::new(),
            }],
            Some("root"),
        )
        .unwrap();
        assert_eq!(users.login(&token).map(|u| u.name.as_str()), Some("u"));
        assert_eq!(users.login("root").map(|u| u.name.as_str()), Some("admin"));
        assert!(users.login("guess").is_none());
    }

    #[test]
    fn a_user_needs_credentials_and_a_certificate_name_of_its_own() {
        let user = |name: &str, cn: Option<&str>| UserConfig {
            name: name.into(),
            token_sha256: None,
            certificate_cn: cn.map(str::to_owned),
            permissions: Vec::new(),
        };
        let err = Users::new(&[user("nobody", None)], None).unwrap_err();
        assert!(err.to_string().contains("no credentials"), "{err}");
        let err = Users::new(&[user("a", Some("app")), user("b", Some("app"))], None).unwrap_err();
        assert!(err.to_string().contains("two users"), "{err}");
        let users = Users::new(&[user("a", Some("app"))], None).unwrap();
        assert!(users.required());
        let login = Login::Certificate("app".into());
        assert_eq!(users.find(&login).map(|u| u.name.as_str()), Some("a"));
        assert!(users.by_certificate("other").is_none());
    }
}
