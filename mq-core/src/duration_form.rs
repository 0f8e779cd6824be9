//! How a duration in a topic's JSON configuration may be written: as before,
//! `{"secs": 30, "nanos": 0}`, or — easier from any language — an integer of milliseconds
//! (`30000`) or a string like `"30s"`, `"1m 30s"`, `"250ms"`. Written back in the first
//! form, so clients that read it stay as they are.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

struct AnyDuration;

impl<'de> Visitor<'de> for AnyDuration {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a duration: milliseconds as an integer, a string like \"30s\", or {\"secs\", \"nanos\"}",
        )
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Duration, E> {
        Ok(Duration::from_millis(ms))
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Duration, E> {
        u64::try_from(ms)
            .map(Duration::from_millis)
            .map_err(|_| E::custom(format!("a duration cannot be negative ({ms} ms)")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        humantime::parse_duration(text).map_err(|e| {
            E::custom(format!(
                "{text:?} is not a duration ({e}): write it like \"500ms\", \"30s\" or \"5m\""
            ))
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Duration, A::Error> {
        Duration::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// Reads a duration in any of the accepted forms.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(AnyDuration)
}

/// Reads an optional duration (`null` for none) in any of the accepted forms.
pub(crate) fn deserialize_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "deserialize")] Duration);
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}
