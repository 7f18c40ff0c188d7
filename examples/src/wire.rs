//! The examples' wire format: one JSON object per frame (a WebSocket text
//! message, a line of TCP, a UDP datagram), with the session id in its
//! `"sid"` field.
//!
//! Anything a peer sends goes through [`parse_frame`] first, so bad input
//! becomes a typed [`BadFrame`] the servers log, never a panic.

use psession_core::Message;
use serde_json::Value;

/// Most bytes one frame may have. Longer frames are refused before they
/// are parsed (and, on TCP, before they are read into memory).
pub const MAX_FRAME_BYTES: usize = 4 * 1024;

/// Why a frame from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    /// The bytes are not UTF-8 text.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// The text is not JSON.
    #[error("invalid JSON ({0})")]
    InvalidJson(String),
    /// The JSON is valid but not an object.
    #[error("not a JSON object (got {0})")]
    NotAnObject(&'static str),
    /// The object has a sid field that is not a positive 32-bit integer.
    #[error("field \"{field}\" must be a positive integer below 2^32, got {found}")]
    BadSid {
        /// The sid field's name.
        field: String,
        /// The value found there, as JSON (cut to 40 characters).
        found: String,
    },
    /// The frame is longer than [`MAX_FRAME_BYTES`].
    #[error("frame longer than {limit} bytes")]
    TooLong {
        /// The limit it broke.
        limit: usize,
    },
}

/// Parses one frame from a peer: UTF-8, JSON, an object, and a well-typed
/// sid if it has one.
///
/// ```
/// use psession_examples::wire::{parse_frame, BadFrame};
///
/// assert!(parse_frame(br#"{"sid":3,"query":"getDeviceList"}"#, "sid").is_ok());
/// assert!(parse_frame(br#"{"type":"command","command":"getStatus"}"#, "sid").is_ok());
/// assert!(matches!(parse_frame(b"{oops", "sid"), Err(BadFrame::InvalidJson(_))));
/// assert_eq!(parse_frame(b"[1,2]", "sid"), Err(BadFrame::NotAnObject("an array")));
/// assert!(matches!(parse_frame(br#"{"sid":"7"}"#, "sid"), Err(BadFrame::BadSid { .. })));
/// ```
pub fn parse_frame(bytes: &[u8], sid_field: &str) -> Result<Value, BadFrame> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(BadFrame::TooLong {
            limit: MAX_FRAME_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| BadFrame::NotUtf8)?;
    let value: Value =
        serde_json::from_str(text).map_err(|error| BadFrame::InvalidJson(error.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(BadFrame::NotAnObject(kind(&value)));
    };
    if let Some(sid) = object.get(sid_field) {
        if value.sid(sid_field).is_none() {
            return Err(BadFrame::BadSid {
                field: sid_field.to_owned(),
                found: crate::log::cut(sid, 40),
            });
        }
    }
    Ok(value)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_bad_frame_is_named() {
        assert_eq!(parse_frame(&[0xff, 0xfe], "sid"), Err(BadFrame::NotUtf8));
        assert!(matches!(
            parse_frame(b"", "sid"),
            Err(BadFrame::InvalidJson(_))
        ));
        assert_eq!(
            parse_frame(b"42", "sid"),
            Err(BadFrame::NotAnObject("a number"))
        );
        assert_eq!(
            parse_frame(b"null", "sid"),
            Err(BadFrame::NotAnObject("null"))
        );
        for sid in [r#""7""#, "-1", "0", "1.5", "4294967296", "null", "[1]"] {
            let frame = format!(r#"{{"sid":{sid}}}"#);
            assert!(
                matches!(
                    parse_frame(frame.as_bytes(), "sid"),
                    Err(BadFrame::BadSid { .. })
                ),
                "{frame}"
            );
        }
        let long = vec![b' '; MAX_FRAME_BYTES + 1];
        assert_eq!(
            parse_frame(&long, "sid"),
            Err(BadFrame::TooLong {
                limit: MAX_FRAME_BYTES
            })
        );
    }

    #[test]
    fn good_frames_pass_untouched() {
        let frame = parse_frame(br#"{"sid":7.0,"a":[1]}"#, "sid").unwrap();
        assert_eq!(frame["a"][0], 1);
        let renamed = parse_frame(br#"{"sid":"x","id":4}"#, "id").unwrap();
        assert_eq!(renamed["sid"], "x");
    }

    #[test]
    fn a_long_bad_sid_is_cut_on_a_character_boundary() {
        let frame = format!(r#"{{"sid":"{}"}}"#, "é".repeat(50));
        let Err(BadFrame::BadSid { found, .. }) = parse_frame(frame.as_bytes(), "sid") else {
            panic!("expected BadSid");
        };
        assert!(found.len() <= 40 + '…'.len_utf8(), "{found}");
        assert!(found.ends_with('…'));
    }
}
