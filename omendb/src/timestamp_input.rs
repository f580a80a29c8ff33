//! Text read as a `TIMESTAMP` (without time zone) as PostgreSQL reads it: a time zone or
//! offset after the time is ignored, so `'1999-01-08 04:05:06+02'` is 04:05:06. Arrow's
//! cast converted such text to UTC (02:05:06), while the same text sent as a parameter was
//! stored unshifted: the stored value depended on the protocol. The analyzer
//! (`checked.rs`) puts [`timestamp_input_udf`] under every cast from text to `TIMESTAMP`.

use arrow::array::AsArray;
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::logical_expr::ScalarUDF;

/// `text` without a zone after its time: `Z`, `+02`, `-05:30`, `+0530`, ` UTC`,
/// ` America/New_York`. Text without a time (`'2024-01-02'`) is returned as it is.
pub(crate) fn without_zone(text: &str) -> &str {
    let trimmed = text.trim_end();
    // The zone can only follow the time, whose first ':' comes after the date.
    let Some(colon) = trimmed.find(':') else {
        return text;
    };
    let time = &trimmed[colon..];
    if let Some(stripped) = trimmed.strip_suffix(['Z', 'z'])
        && stripped.ends_with(|c: char| c.is_ascii_digit())
    {
        return stripped;
    }
    // A numeric offset: a sign after the time, then digits and colons only.
    if let Some(at) = time.rfind(['+', '-'])
        && time[at + 1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':')
        && time.len() > at + 1
    {
        return trimmed[..colon + at].trim_end();
    }
    // A zone name: the last word after the time, starting with a letter (not AM/PM).
    if let Some(space) = time.rfind(' ') {
        let word = &time[space + 1..];
        let named = word.starts_with(|c: char| c.is_ascii_alphabetic())
            && !word.eq_ignore_ascii_case("am")
            && !word.eq_ignore_ascii_case("pm");
        if named {
            return trimmed[..colon + space].trim_end();
        }
    }
    text
}

/// `text` with `:00` seconds when its time has only hours and minutes (`'2024-01-02
/// 10:30'`, which PostgreSQL reads and Arrow's cast refuses).
pub(crate) fn with_seconds(text: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = text.rfind([' ', 'T']) else {
        return text.into();
    };
    let time = &text.as_bytes()[start + 1..];
    let hours_minutes = match time {
        [h, b':', m1, m2] => h.is_ascii_digit() && m1.is_ascii_digit() && m2.is_ascii_digit(),
        [h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()),
        _ => false,
    };
    if hours_minutes && text[..start].contains('-') {
        format!("{text}:00").into()
    } else {
        text.into()
    }
}

/// Text to be cast to `TIMESTAMP`, without its zone ([`without_zone`]) and with seconds
/// ([`with_seconds`]).
pub(crate) fn timestamp_input_udf() -> ScalarUDF {
    crate::text_function::TextFunction::udf(TIMESTAMP_INPUT, |array| {
        let text = cast(array, &DataType::Utf8)?;
        Ok(text
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(|v| with_seconds(without_zone(v))))
            .collect())
    })
}

/// The name of [`timestamp_input_udf`].
pub(crate) const TIMESTAMP_INPUT: &str = "timestamp_input";

#[cfg(test)]
mod tests {
    use super::{with_seconds, without_zone};

    #[test]
    fn a_time_without_seconds_gets_them() {
        for (text, expected) in [
            ("2024-01-02 10:30", "2024-01-02 10:30:00"),
            ("2024-01-02T9:05", "2024-01-02T9:05:00"),
            ("2024-01-02 10:30:15", "2024-01-02 10:30:15"),
            ("2024-01-02", "2024-01-02"),
            ("10:30", "10:30"),
        ] {
            assert_eq!(with_seconds(text), expected, "{text}");
        }
    }

    #[test]
    fn zones_after_the_time_are_dropped() {
        for (text, expected) in [
            ("1999-01-08 04:05:06+02", "1999-01-08 04:05:06"),
            ("1999-01-08 04:05:06.5-05:30", "1999-01-08 04:05:06.5"),
            ("1999-01-08T04:05:06Z", "1999-01-08T04:05:06"),
            ("1999-01-08 04:05:06 +0530", "1999-01-08 04:05:06"),
            (
                "1999-01-08 04:05:06 America/New_York",
                "1999-01-08 04:05:06",
            ),
            ("1999-01-08 04:05:06 UTC", "1999-01-08 04:05:06"),
            ("1999-01-08 04:05:06", "1999-01-08 04:05:06"),
            ("1999-01-08", "1999-01-08"),
            ("1999-01-08 04:05 PM", "1999-01-08 04:05 PM"),
            ("not a timestamp", "not a timestamp"),
        ] {
            assert_eq!(without_zone(text), expected, "{text}");
        }
    }
}
