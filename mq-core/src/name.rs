//! Validated names for topics and groups.
//!
//! Names users choose follow one rule: 1–200 characters of `[A-Za-z0-9._-]`, not starting
//! with `.`. Names the broker makes follow their own, so they never collide with a user's
//! and are accepted in every request: a dead-letter topic is `<topic>.dlq` (up to 204
//! characters), an ephemeral group is `~ephemeral-<number>`. A name is checked once, when
//! the value is built — also when it is deserialized; everything past that point can rely
//! on it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The longest topic or group name a user may choose.
pub const MAX_NAME_LEN: usize = 200;

/// Suffix of the dead-letter topic that collects a topic's poison messages.
pub const DLQ_SUFFIX: &str = ".dlq";

/// Why a string is not a valid topic or group name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("{kind} name is empty: use 1-{MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -")]
    Empty {
        /// `"topic"` or `"group"`.
        kind: &'static str,
    },
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("{kind} name is {len} characters long: use at most {MAX_NAME_LEN}")]
    TooLong {
        /// `"topic"` or `"group"`.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A topic name ending in `.dlq` where only the broker may write: dead-letter topics
    /// receive the messages their topic's groups give up on, never publishes.
    #[error(
        "topic {name:?} is a dead-letter topic: only the broker writes to names ending in \
         {DLQ_SUFFIX}; publish to {base:?} instead"
    )]
    Reserved {
        /// The rejected name.
        name: String,
        /// The topic whose dead-letter topic it is.
        base: String,
    },
    /// The name holds a character outside `[A-Za-z0-9._-]` or starts with `.`.
    #[error("{kind} name {name:?} is invalid: use A-Z a-z 0-9 . _ - and do not start with '.'")]
    Invalid {
        /// `"topic"` or `"group"`.
        kind: &'static str,
        /// The rejected name.
        name: String,
    },
}

fn validate(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
        });
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if name.starts_with('.') || !name.bytes().all(allowed) {
        return Err(NameError::Invalid {
            kind,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// The name of a topic, validated on construction.
///
/// ```
/// use mq_core::TopicName;
/// assert!(TopicName::new("orders.eu-1").is_ok());
/// assert!(TopicName::new("a b").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `name` as a topic name.
    ///
    /// # Errors
    /// [`NameError`] when the name is empty, too long or holds other characters.
    pub fn new(name: impl AsRef<str>) -> Result<Self, NameError> {
        let name = name.as_ref();
        validate("topic", name)?;
        Ok(Self(Arc::from(name)))
    }

    /// Validates `name` as a topic name or as the dead-letter topic of one: the names a
    /// broker may hold, including dead-letter topics of 197+ character names, which are
    /// longer than [`MAX_NAME_LEN`].
    ///
    /// # Errors
    /// [`NameError`] as [`TopicName::new`] when it is neither.
    pub fn new_or_dead_letter(name: impl AsRef<str>) -> Result<Self, NameError> {
        let name = name.as_ref();
        Self::new(name).or_else(|e| {
            name.strip_suffix(DLQ_SUFFIX)
                .and_then(|base| Self::new(base).ok())
                .map(|t| t.dead_letter())
                .ok_or(e)
        })
    }

    /// The name of this topic's dead-letter topic, `<name>.dlq`.
    ///
    /// The only way to get a name longer than [`MAX_NAME_LEN`]: a dead-letter topic of a
    /// 200-character topic keeps its full name rather than lose messages.
    pub fn dead_letter(&self) -> TopicName {
        TopicName(Arc::from(format!("{}{DLQ_SUFFIX}", self.0)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic this is the dead-letter topic of, when its name ends in `.dlq` after a
    /// valid topic name.
    pub fn dead_letter_of(&self) -> Option<TopicName> {
        let base = self.0.strip_suffix(DLQ_SUFFIX)?;
        TopicName::new(base).ok()
    }
}

impl TryFrom<String> for TopicName {
    type Error = NameError;
    /// Accepts the names a broker may hold ([`TopicName::new_or_dead_letter`]).
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new_or_dead_letter(value)
    }
}

impl TryFrom<&str> for TopicName {
    type Error = NameError;
    /// `"orders".try_into()?`: as [`TryFrom<String>`].
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new_or_dead_letter(value)
    }
}

impl From<TopicName> for String {
    fn from(value: TopicName) -> Self {
        value.0.as_ref().to_owned()
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a consumer group, validated on construction.
///
/// Ephemeral groups (a consumer that attaches without a group name) get a generated name
/// starting with `~`, a character users cannot choose, so they never collide with a named
/// group.
///
/// ```
/// use mq_core::GroupName;
/// assert!(GroupName::new("billing").is_ok());
/// assert!(GroupName::new(".hidden").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct GroupName(Arc<str>);

/// Prefix of the generated name of an ephemeral group.
const EPHEMERAL: &str = "~ephemeral-";

impl GroupName {
    /// Validates `name` as a group name.
    ///
    /// # Errors
    /// [`NameError`] when the name is empty, too long or holds other characters.
    pub fn new(name: impl AsRef<str>) -> Result<Self, NameError> {
        let name = name.as_ref();
        validate("group", name)?;
        Ok(Self(Arc::from(name)))
    }

    /// Validates `name` as a group name or as the generated name of an ephemeral group:
    /// the names a broker may hold.
    ///
    /// # Errors
    /// [`NameError`] as [`GroupName::new`] when it is neither.
    pub fn new_or_ephemeral(name: impl AsRef<str>) -> Result<Self, NameError> {
        let name = name.as_ref();
        Self::new(name).or_else(|e| {
            let digits = name.strip_prefix(EPHEMERAL).ok_or_else(|| e.clone())?;
            match digits.parse::<u64>() {
                // As generated: no sign, no leading zero.
                Ok(id) if id.to_string() == digits => Ok(Self::ephemeral(id)),
                _ => Err(e),
            }
        })
    }

    /// The generated name of an ephemeral group owned by one consumer.
    pub(crate) fn ephemeral(id: u64) -> Self {
        Self(Arc::from(format!("{EPHEMERAL}{id}")))
    }

    /// Whether this is a generated ephemeral-group name.
    pub fn is_ephemeral(&self) -> bool {
        self.0.starts_with(EPHEMERAL)
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for GroupName {
    type Error = NameError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for GroupName {
    type Error = NameError;
    /// Accepts the names a broker may hold ([`GroupName::new_or_ephemeral`]).
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new_or_ephemeral(value)
    }
}

impl From<GroupName> for String {
    fn from(value: GroupName) -> Self {
        value.0.as_ref().to_owned()
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_alphabet() {
        assert!(TopicName::new("A-z_0.9").is_ok());
        assert!(GroupName::new("g").is_ok());
        assert!(TopicName::new("x".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn names_reject_empty_long_leading_dot_and_other_characters() {
        assert_eq!(TopicName::new(""), Err(NameError::Empty { kind: "topic" }));
        assert!(matches!(
            TopicName::new("x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { len: 201, .. })
        ));
        for bad in [".a", "a b", "a/b", "é", "a*"] {
            assert!(TopicName::new(bad).is_err(), "{bad:?} accepted");
            assert!(GroupName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn name_error_says_what_to_do() {
        let err = TopicName::new("a b").unwrap_err().to_string();
        assert_eq!(
            err,
            "topic name \"a b\" is invalid: use A-Z a-z 0-9 . _ - and do not start with '.'"
        );
    }

    #[test]
    fn dead_letter_topic_is_named_after_its_topic() {
        let t = TopicName::new("orders").unwrap();
        assert_eq!(t.dead_letter().as_str(), "orders.dlq");
    }

    #[test]
    fn ephemeral_group_names_cannot_be_chosen_by_users_but_are_accepted_back() {
        let g = GroupName::ephemeral(7);
        assert!(g.is_ephemeral());
        assert!(GroupName::new(g.as_str()).is_err());
        assert_eq!(GroupName::new_or_ephemeral(g.as_str()), Ok(g));
        for bad in ["~ephemeral-", "~ephemeral-x", "~ephemeral-07", "~other-7"] {
            assert!(
                GroupName::new_or_ephemeral(bad).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn deserializing_a_name_validates_it() {
        let g: Result<GroupName, _> = serde_json::from_str("\"a b\"");
        assert!(g.is_err());
        let t: TopicName = serde_json::from_str(&format!("\"{}.dlq\"", "t".repeat(200))).unwrap();
        assert_eq!(t.as_str().len(), 204);
        let t: Result<TopicName, _> = serde_json::from_str("\".x\"");
        assert!(t.is_err());
    }
}
