//! Entry points for the fuzz targets (feature `fuzzing`): the storage's record and journal
//! decoders over arbitrary bytes, checking the invariants recovery relies on. Each panics —
//! for the fuzzer to report — when a decoder breaks one.

use bytes::Bytes;

use super::journal;
use crate::record::{self, Read};

/// Reads `data` as a segment, record by record, resuming after damage as recovery does:
/// a record that decodes agrees with its metadata read and encodes back to its own bytes,
/// and the walk always moves forward. Then again with every record's checksum made to
/// match (a fuzzer seldom guesses a CRC), so that the field parsers see every body.
pub fn records(data: &[u8]) {
    walk(data);
    walk(&with_checksums(data));
}

/// `data` with the checksum of each record in the chain its lengths make set right.
fn with_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut pos = 0;
    while let Some(header) = out.get(pos..pos + record::FRAME) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let body = pos + record::FRAME;
        let Some(end) = body.checked_add(len).filter(|&e| e <= out.len()) else {
            break;
        };
        let crc = crc32c::crc32c(&out[body..end]);
        out[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
    out
}

fn walk(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let mut pos = 0;
    let mut last = None;
    while pos < data.len() {
        match record::decode(&bytes, pos) {
            Read::Record(message, len, stamp) => {
                let meta = record::decode_meta(data, pos);
                let Ok(Some((meta, meta_len))) = meta else {
                    panic!("a record decodes at {pos} but its metadata does not: {meta:?}");
                };
                assert_eq!(meta_len, len, "lengths of the record at {pos}");
                assert_eq!(meta.offset, message.offset.get());
                assert_eq!(meta.stamp, stamp);
                assert_eq!(meta.encoded, message.encoded_size());
                let mut again = Vec::new();
                record::encode(record::Fields::of(&message), stamp, true, &mut again)
                    .unwrap_or_else(|e| panic!("a decoded record does not encode: {e}"));
                assert_eq!(&again[..], &data[pos..pos + len], "the record at {pos}");
                last = Some(message.offset.get());
                pos += len;
            }
            Read::End => break,
            Read::Damaged(_) => {
                assert!(record::decode_meta(data, pos).is_err(), "damage at {pos}");
                match record::find_next(data, pos + 1, last) {
                    Some(next) => {
                        assert!(next > pos, "find_next went back");
                        pos = next;
                    }
                    None => break,
                }
            }
        }
    }
}

/// Reads `data` as a group journal from every position: an entry that decodes encodes
/// back to its own bytes.
pub fn journal(data: &[u8]) {
    for pos in 0..data.len() {
        journal::check_entry_at(data, pos);
    }
}
