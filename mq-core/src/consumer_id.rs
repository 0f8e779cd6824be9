//! [`ConsumerId`]: the number naming one attached consumer.

use serde::{Deserialize, Serialize};

/// Identifies one attached consumer, unique within a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConsumerId(pub u64);
