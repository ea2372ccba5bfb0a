//! Field rules for what clients send. Pure functions, unit-tested here.

use crate::problem::ApiError;

pub const MAX_TEXT_CHARS: usize = 500;
pub const MAX_USER_ID_CHARS: usize = 128;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// A stream id, by the rule every role shares ([`chorus_schemas::is_valid_stream_id`]).
pub fn stream_id(raw: &str) -> Result<&str, ApiError> {
    if chorus_schemas::is_valid_stream_id(raw) {
        Ok(raw)
    } else {
        let shown = chorus_schemas::topics::MAX_STREAM_ID_LEN + 1;
        Err(ApiError::BadStreamId(raw.chars().take(shown).collect()))
    }
}

/// Comment text: not blank, at most 500 characters (Unicode scalar values), no control characters.
pub fn comment_text(text: &str) -> Result<&str, ApiError> {
    let invalid = |detail: String| ApiError::InvalidField {
        field: "text",
        detail,
    };
    if text.trim().is_empty() {
        return Err(invalid("`text` must not be empty".into()));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(invalid(format!(
            "`text` has {chars} characters; at most {MAX_TEXT_CHARS} are allowed"
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(invalid(format!(
            "`text` contains the control character U+{:04X}",
            c as u32
        )));
    }
    Ok(text)
}

/// A user id from the trusted gateway header: 1 to 128 visible ASCII characters.
pub fn user_id(raw: Option<&str>) -> Option<&str> {
    visible_ascii(raw, MAX_USER_ID_CHARS)
}

/// An event id in a path (a take-down's): 1 to 128 visible ASCII characters.
pub fn event_id(raw: &str) -> Result<&str, ApiError> {
    visible_ascii(Some(raw), MAX_IDEMPOTENCY_KEY_CHARS).ok_or_else(|| ApiError::InvalidField {
        field: "event_id",
        detail: "the event id must be 1 to 128 visible ASCII characters".into(),
    })
}

/// A user id in a path (a ban's): as the gateway header's.
pub fn path_user_id(raw: &str) -> Result<&str, ApiError> {
    user_id(Some(raw)).ok_or_else(|| ApiError::InvalidField {
        field: "user_id",
        detail: format!("the user id must be 1 to {MAX_USER_ID_CHARS} visible ASCII characters"),
    })
}

/// Free text of a control (a ban's reason, a blocked term): at most `max` characters, no control characters.
pub fn short_text<'t>(field: &'static str, text: &'t str, max: usize) -> Result<&'t str, ApiError> {
    let chars = text.chars().count();
    if chars > max || text.chars().any(char::is_control) {
        return Err(ApiError::InvalidField {
            field,
            detail: format!(
                "`{field}` must be at most {max} characters, none of them control characters"
            ),
        });
    }
    Ok(text)
}

/// An `Idempotency-Key`: 1 to 128 visible ASCII characters.
pub fn idempotency_key(raw: Option<&str>) -> Option<&str> {
    visible_ascii(raw, MAX_IDEMPOTENCY_KEY_CHARS)
}

fn visible_ascii(raw: Option<&str>, max_len: usize) -> Option<&str> {
    raw.filter(|s| !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_graphic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_texts() {
        assert!(comment_text("What a six! 🏏").is_ok());
        assert!(
            comment_text(&"é".repeat(500)).is_ok(),
            "500 two-byte characters are 500 characters"
        );
        for bad in ["", "   ", "a\u{7}b", "line\nbreak", "\u{9f}"] {
            assert!(comment_text(bad).is_err(), "{bad:?}");
        }
        assert!(comment_text(&"x".repeat(501)).is_err());
    }

    #[test]
    fn user_ids() {
        assert_eq!(user_id(Some("u-1")), Some("u-1"));
        assert_eq!(user_id(Some("")), None);
        assert_eq!(user_id(Some("a b")), None);
        assert_eq!(user_id(None), None);
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_up_to_128() {
        assert_eq!(idempotency_key(Some("retry-1")), Some("retry-1"));
        let longest = "k".repeat(128);
        assert_eq!(idempotency_key(Some(&longest)), Some(longest.as_str()));
        for bad in ["", "a b", "ключ", &"k".repeat(129)] {
            assert_eq!(idempotency_key(Some(bad)), None, "{bad:?}");
        }
    }
}
