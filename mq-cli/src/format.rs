//! Output for people (aligned tables) and for scripts (JSON), and the JSON form of a
//! consumed message (README, CLI tour).

use base64::Engine;
use mq_client::WireDelivery;
use serde_json::{Map, Value, json};

/// Renders rows as a table with a header, columns aligned (numbers to the right).
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|r| r.get(i).is_some_and(|c| c.parse::<f64>().is_ok()))
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if numeric[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `name: value` lines with the values aligned.
pub(crate) fn pairs(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}", width = width + 1, k = format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Puts `bytes` under `name` as a string when it is UTF-8, else under `name_base64`.
fn put_bytes(obj: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => obj.insert(name.to_owned(), Value::String(text.to_owned())),
        Err(_) => obj.insert(
            format!("{name}_base64"),
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    };
}

/// A consumed or peeked message as one JSON object.
pub(crate) fn message_json(topic: &str, m: &WireDelivery) -> Value {
    let mut obj = Map::new();
    obj.insert("topic".into(), json!(topic));
    obj.insert("offset".into(), json!(m.offset.get()));
    obj.insert("timestamp".into(), json!(m.timestamp.as_millis()));
    obj.insert("priority".into(), json!(m.priority));
    match &m.key {
        Some(key) => put_bytes(&mut obj, "key", key),
        None => {
            obj.insert("key".into(), Value::Null);
        }
    }
    let mut headers = Map::new();
    for h in &m.headers {
        put_bytes(&mut headers, &h.name, &h.value);
    }
    obj.insert("headers".into(), Value::Object(headers));
    put_bytes(&mut obj, "payload", &m.payload);
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let t = table(
            &["NAME", "COUNT"],
            &[
                vec!["a".into(), "5".into()],
                vec!["longer".into(), "12345".into()],
            ],
        );
        assert_eq!(t, "NAME    COUNT\na           5\nlonger  12345");
    }

    #[test]
    fn invalid_utf8_goes_to_a_base64_field() {
        let mut obj = Map::new();
        put_bytes(&mut obj, "payload", &[0xff, 0x00]);
        assert_eq!(obj.get("payload_base64"), Some(&json!("/wA=")));
        put_bytes(&mut obj, "key", b"k");
        assert_eq!(obj.get("key"), Some(&json!("k")));
    }
}
