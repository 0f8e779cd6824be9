//! Output for people (aligned tables) and for scripts (JSON), and the JSON form of a
//! consumed message (README, CLI tour).

use base64::Engine;
use mq_client::WireDelivery;
use serde_json::{Map, Value, json};

/// Renders rows as a table with a header, columns aligned (numbers, and sizes like
/// `1.5 MiB`, to the right), by comfy-table: wide characters keep their columns.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|r| r.get(i).is_some_and(|c| looks_numeric(c)))
        })
        .collect();
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for row in rows {
        t.add_row(row.iter().map(String::as_str));
    }
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if numeric.get(i).copied().unwrap_or(false) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    t.lines()
        .map(|l| l.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a cell holds a number or a size (`12`, `3.5`, `1.2 KiB`, `-`).
fn looks_numeric(cell: &str) -> bool {
    let number = cell.split(' ').next().unwrap_or_default();
    cell == "-" || number.parse::<f64>().is_ok()
}

/// `1 message`, `2 messages`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
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
        let wide = table(&["NAME"], &[vec!["日本".into()], vec!["ab".into()]]);
        assert_eq!(wide, "NAME\n日本\nab");
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(1 << 30), "1.0 GiB");
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
