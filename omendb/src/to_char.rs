//! `to_char(date or timestamp, format)` with PostgreSQL's template patterns.
//!
//! DataFusion's `to_char` reads its format as `strftime`'s: `to_char(date '2024-05-17',
//! 'DD/MM/YYYY')` returned the text `DD/MM/YYYY`, silently, and `'%Y'` gave `2024` where
//! PostgreSQL prints `%4`. This `to_char` keeps DataFusion's signature (so the same
//! arguments are coerced the same way) and formats as PostgreSQL's `DCH_to_char`:
//!
//! - Fields: `YYYY YYY YY Y Y,YYY IYYY IYY IY I CC MM MON Mon mon MONTH Month month RM rm
//!   DD DDD D ID DAY Day day DY Dy dy W WW IW Q J HH HH12 HH24 MI SS MS US SSSS SSSSS
//!   AM am PM pm A.M. a.m. P.M. p.m. AD ad BC bc A.D. a.d. B.C. b.c. TZ tz OF`, matched
//!   longest first and case-insensitively where PostgreSQL is (numeric fields).
//! - Modifiers: `FM` (no padding), `TH`/`th` (ordinal suffix), `FX` (accepted, no effect).
//! - Text in double quotes is copied; a backslash copies the character after it; any other
//!   character is copied as it is.
//!
//! Invariant: the output is a function of the value and the template alone, built in one
//! pass over the template per row (linear in the template's length times the rows), never
//! the template itself where it names fields.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, simplify::ExprSimplifyResult, simplify::SimplifyContext,
};
use datafusion::prelude::Expr;

/// PostgreSQL's `to_char` for dates and timestamps, in place of DataFusion's `inner`
/// (whose signature, coercion and documentation it keeps; durations stay with `inner`).
pub(crate) fn udf(inner: Arc<ScalarUDF>) -> ScalarUDF {
    ScalarUDF::new_from_impl(ToChar { inner })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToChar {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for ToChar {
    crate::bounded::delegate_to_inner!();

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value, format] = args.args.as_slice() else {
            return self.inner.invoke_with_args(args);
        };
        if matches!(value.data_type(), DataType::Duration(_)) {
            return self.inner.invoke_with_args(args);
        }
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let values = timestamps(&value.to_array(rows)?)?;
        let values = values.as_primitive::<TimestampMicrosecondType>();
        let formats = cast(&format.to_array(rows)?, &DataType::Utf8)?;
        let formats = formats.as_string::<i32>();
        // A constant template (the usual case) is read once.
        let constant = match format {
            ColumnarValue::Scalar(_) if !formats.is_null(0) => Some(parse(formats.value(0))),
            _ => None,
        };
        let mut built = StringBuilder::with_capacity(rows, rows * 16);
        for row in 0..rows {
            if row % 4096 == 0 {
                crate::interrupt::check_current_in_plan()?;
            }
            if values.is_null(row) || formats.is_null(row) {
                built.append_null();
                continue;
            }
            let Some(at) = DateTime::from_timestamp_micros(values.value(row)) else {
                built.append_null();
                continue;
            };
            let parsed;
            let template = match &constant {
                Some(template) => template,
                None => {
                    parsed = parse(formats.value(row));
                    &parsed
                }
            };
            built.append_value(render(template, &at.naive_utc()));
        }
        crate::checked::answer(Arc::new(built.finish()), scalar)
    }
}

/// `array` as microsecond timestamps (a date at its midnight, a time on 1970-01-01).
fn timestamps(array: &ArrayRef) -> Result<ArrayRef> {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    Ok(match array.data_type() {
        DataType::Time32(_) | DataType::Time64(_) => {
            let since_midnight = cast(array, &DataType::Time64(TimeUnit::Microsecond))?;
            let since_midnight = cast(&since_midnight, &DataType::Int64)?;
            cast(&since_midnight, &micros)?
        }
        DataType::Timestamp(_, Some(_)) => {
            // The instant in UTC: the server's sessions run in UTC.
            let utc = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            cast(&utc, &micros)?
        }
        _ => cast(array, &micros)?,
    })
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Literal(String),
    Field {
        field: Field,
        /// How a text field's source was written: `MONTH`, `Month` or `month`.
        case: Case,
        fill_mode: bool,
        ordinal: Option<Case>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Upper,
    Capitalized,
    Lower,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    YearComma,
    Year4,
    Year3,
    Year2,
    Year1,
    IsoYear4,
    IsoYear3,
    IsoYear2,
    IsoYear1,
    Century,
    Month,
    MonthName,
    MonthAbbrev,
    RomanMonth,
    DayOfYear,
    IsoDayOfYear,
    DayOfMonth,
    DayOfWeek,
    IsoDayOfWeek,
    DayName,
    DayAbbrev,
    WeekOfMonth,
    WeekOfYear,
    IsoWeek,
    Quarter,
    Julian,
    Hour24,
    Hour12,
    Minute,
    Second,
    Millis,
    Micros,
    SecondsOfDay,
    Meridiem { dots: bool },
    Era { dots: bool },
    Zone,
}

/// Patterns, longest first where one is a prefix of another (PostgreSQL's order).
const PATTERNS: &[(&str, Field)] = &[
    ("A.D.", Field::Era { dots: true }),
    ("A.M.", Field::Meridiem { dots: true }),
    ("AD", Field::Era { dots: false }),
    ("AM", Field::Meridiem { dots: false }),
    ("B.C.", Field::Era { dots: true }),
    ("BC", Field::Era { dots: false }),
    ("CC", Field::Century),
    ("DAY", Field::DayName),
    ("DDD", Field::DayOfYear),
    ("DD", Field::DayOfMonth),
    ("DY", Field::DayAbbrev),
    ("D", Field::DayOfWeek),
    ("HH24", Field::Hour24),
    ("HH12", Field::Hour12),
    ("HH", Field::Hour12),
    ("IDDD", Field::IsoDayOfYear),
    ("ID", Field::IsoDayOfWeek),
    ("IW", Field::IsoWeek),
    ("IYYY", Field::IsoYear4),
    ("IYY", Field::IsoYear3),
    ("IY", Field::IsoYear2),
    ("I", Field::IsoYear1),
    ("J", Field::Julian),
    ("MI", Field::Minute),
    ("MM", Field::Month),
    ("MONTH", Field::MonthName),
    ("MON", Field::MonthAbbrev),
    ("MS", Field::Millis),
    ("OF", Field::Zone),
    ("P.M.", Field::Meridiem { dots: true }),
    ("PM", Field::Meridiem { dots: false }),
    ("Q", Field::Quarter),
    ("RM", Field::RomanMonth),
    ("SSSSS", Field::SecondsOfDay),
    ("SSSS", Field::SecondsOfDay),
    ("SS", Field::Second),
    ("TZH", Field::Zone),
    ("TZM", Field::Zone),
    ("TZ", Field::Zone),
    ("US", Field::Micros),
    ("WW", Field::WeekOfYear),
    ("W", Field::WeekOfMonth),
    ("Y,YYY", Field::YearComma),
    ("YYYY", Field::Year4),
    ("YYY", Field::Year3),
    ("YY", Field::Year2),
    ("Y", Field::Year1),
];

/// `template` split into literal text and fields.
fn parse(template: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            // Quoted text, with \" for a quote inside it.
            let mut chars = rest[1..].char_indices();
            let mut end = rest.len();
            while let Some((at, q)) = chars.next() {
                match q {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            literal.push(escaped);
                        }
                    }
                    '"' => {
                        end = at + 2;
                        break;
                    }
                    other => literal.push(other),
                }
            }
            rest = &rest[end.min(rest.len())..];
            continue;
        }
        if c == '\\' {
            let mut chars = rest.chars();
            chars.next();
            match chars.next() {
                Some(escaped) => {
                    literal.push(escaped);
                    rest = &rest[1 + escaped.len_utf8()..];
                }
                None => {
                    literal.push('\\');
                    rest = "";
                }
            }
            continue;
        }
        let (fill_mode, after_fm) = match strip_prefix_ignore_case(rest, "FM") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        if let Some(after) = strip_prefix_ignore_case(rest, "FX") {
            rest = after;
            continue;
        }
        let found = PATTERNS
            .iter()
            .find(|(pattern, _)| strip_prefix_ignore_case(after_fm, pattern).is_some());
        let Some((pattern, field)) = found else {
            if fill_mode {
                // `FM` before no field: PostgreSQL drops it.
                rest = after_fm;
                continue;
            }
            literal.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        let source = &after_fm[..pattern.len()];
        let mut after = &after_fm[pattern.len()..];
        let ordinal = if after.starts_with("TH") {
            Some(Case::Upper)
        } else if after.starts_with("th") {
            Some(Case::Lower)
        } else {
            None
        };
        if ordinal.is_some() {
            after = &after[2..];
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Field {
            field: *field,
            case: case_of(source),
            fill_mode,
            ordinal,
        });
        rest = after;
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn case_of(source: &str) -> Case {
    let mut letters = source.chars().filter(char::is_ascii_alphabetic);
    match letters.next() {
        Some(first) if first.is_ascii_lowercase() => Case::Lower,
        Some(_) if letters.any(|c| c.is_ascii_lowercase()) => Case::Capitalized,
        _ => Case::Upper,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const ROMAN: [&str; 12] = [
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII",
];

/// The text of `template` for the moment `at`.
fn render(template: &[Piece], at: &NaiveDateTime) -> String {
    let mut out = String::new();
    for piece in template {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Field {
                field,
                case,
                fill_mode,
                ordinal,
            } => {
                let start = out.len();
                field_text(&mut out, *field, *case, *fill_mode, at);
                if let Some(suffix_case) = ordinal
                    && let Ok(number) = out[start..].trim().parse::<i64>()
                {
                    let suffix = ordinal_suffix(number);
                    match suffix_case {
                        Case::Lower => out.push_str(suffix),
                        _ => out.push_str(&suffix.to_ascii_uppercase()),
                    }
                }
            }
        }
    }
    out
}

fn ordinal_suffix(number: i64) -> &'static str {
    let n = number.unsigned_abs();
    match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

fn field_text(out: &mut String, field: Field, case: Case, fill_mode: bool, at: &NaiveDateTime) {
    use std::fmt::Write;
    let number = |out: &mut String, value: i64, width: usize| {
        let width = if fill_mode { 0 } else { width };
        let _ = write!(out, "{value:0width$}");
    };
    let text = |out: &mut String, name: &str, width: usize| {
        let cased = match case {
            Case::Upper => name.to_ascii_uppercase(),
            Case::Capitalized => name.to_string(),
            Case::Lower => name.to_ascii_lowercase(),
        };
        if fill_mode {
            out.push_str(&cased);
        } else {
            let _ = write!(out, "{cased:<width$}");
        }
    };
    // Years before 1 are printed as positive years BC, as PostgreSQL's.
    let year = i64::from(at.year());
    let shown_year = if year <= 0 { 1 - year } else { year };
    let iso_year = i64::from(at.iso_week().year());
    let hour12 = match at.hour() % 12 {
        0 => 12,
        h => i64::from(h),
    };
    let month = at.month0() as usize;
    let weekday = at.weekday().num_days_from_sunday() as usize;
    match field {
        Field::YearComma => {
            let _ = write!(out, "{},{:03}", shown_year / 1000, shown_year % 1000);
        }
        Field::Year4 => number(out, shown_year, 4),
        Field::Year3 => number(out, shown_year % 1000, 3),
        Field::Year2 => number(out, shown_year % 100, 2),
        Field::Year1 => number(out, shown_year % 10, 1),
        Field::IsoYear4 => number(out, iso_year, 4),
        Field::IsoYear3 => number(out, iso_year % 1000, 3),
        Field::IsoYear2 => number(out, iso_year % 100, 2),
        Field::IsoYear1 => number(out, iso_year % 10, 1),
        Field::Century => {
            let century = if year > 0 {
                (year + 99) / 100
            } else {
                -((99 - year) / 100)
            };
            number(out, century, 2);
        }
        Field::Month => number(out, i64::from(at.month()), 2),
        Field::MonthName => text(out, MONTHS[month], 9),
        Field::MonthAbbrev => text(out, &MONTHS[month][..3], 3),
        Field::RomanMonth => {
            let roman = match case {
                Case::Lower => ROMAN[month].to_ascii_lowercase(),
                _ => ROMAN[month].to_string(),
            };
            if fill_mode {
                out.push_str(&roman);
            } else {
                let _ = write!(out, "{roman:<4}");
            }
        }
        Field::DayOfYear => number(out, i64::from(at.ordinal()), 3),
        Field::IsoDayOfYear => {
            let week = i64::from(at.iso_week().week());
            let day = i64::from(at.weekday().number_from_monday());
            number(out, (week - 1) * 7 + day, 3);
        }
        Field::DayOfMonth => number(out, i64::from(at.day()), 2),
        Field::DayOfWeek => number(out, weekday as i64 + 1, 1),
        Field::IsoDayOfWeek => number(out, i64::from(at.weekday().number_from_monday()), 1),
        Field::DayName => text(out, DAYS[weekday], 9),
        Field::DayAbbrev => text(out, &DAYS[weekday][..3], 3),
        Field::WeekOfMonth => number(out, i64::from((at.day() - 1) / 7 + 1), 1),
        Field::WeekOfYear => number(out, i64::from((at.ordinal() - 1) / 7 + 1), 2),
        Field::IsoWeek => number(out, i64::from(at.iso_week().week()), 2),
        Field::Quarter => number(out, i64::from(at.month0() / 3 + 1), 1),
        Field::Julian => number(out, i64::from(at.num_days_from_ce()) + 1_721_425, 1),
        Field::Hour24 => number(out, i64::from(at.hour()), 2),
        Field::Hour12 => number(out, hour12, 2),
        Field::Minute => number(out, i64::from(at.minute()), 2),
        Field::Second => number(out, i64::from(at.second()), 2),
        Field::Millis => number(out, i64::from(at.nanosecond() / 1_000_000), 3),
        Field::Micros => number(out, i64::from(at.nanosecond() / 1_000), 6),
        Field::SecondsOfDay => number(out, i64::from(at.num_seconds_from_midnight()), 1),
        Field::Meridiem { dots } => {
            let name = match (at.hour() < 12, dots) {
                (true, false) => "AM",
                (false, false) => "PM",
                (true, true) => "A.M.",
                (false, true) => "P.M.",
            };
            out.push_str(&if case == Case::Lower {
                name.to_ascii_lowercase()
            } else {
                name.to_string()
            });
        }
        Field::Era { dots } => {
            let name = match (year > 0, dots) {
                (true, false) => "AD",
                (false, false) => "BC",
                (true, true) => "A.D.",
                (false, true) => "B.C.",
            };
            out.push_str(&if case == Case::Lower {
                name.to_ascii_lowercase()
            } else {
                name.to_string()
            });
        }
        // A TIMESTAMP without a zone has none to print, as in PostgreSQL.
        Field::Zone => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_micro_opt(h, mi, s, us))
            .expect("valid")
    }

    fn format(template: &str, value: &NaiveDateTime) -> String {
        render(&parse(template), value)
    }

    #[test]
    fn templates_print_as_postgresql_prints_them() {
        let may = at(2024, 5, 17, 13, 4, 5, 123_456);
        for (template, expected) in [
            ("DD/MM/YYYY", "17/05/2024"),
            ("HH24:MI:SS", "13:04:05"),
            ("HH12:MI AM", "01:04 PM"),
            ("hh:mi:ss.ms.us pm", "01:04:05.123.123456 pm"),
            ("%Y", "%4"),
            ("Month", "May      "),
            ("FMMonth", "May"),
            ("MONTH|Mon|mon|month", "MAY      |May|may|may      "),
            ("Day Dy DY day", "Friday    Fri FRI friday   "),
            ("FMDDth \"of\" FMMonth", "17th of May"),
            ("DDD D ID Q WW W IW", "138 6 5 2 20 3 20"),
            ("Y,YYY YYY YY Y CC", "2,024 024 24 4 21"),
            ("J", "2460448"),
            ("SSSS", "47045"),
            ("RM rm", "V    v   "),
            ("FMMM/FMDD", "5/17"),
            ("\"YYYY\" \\Y", "YYYY Y"),
            ("IYYY-IW-ID", "2024-20-5"),
            ("AD B.C. a.d.", "AD A.D. a.d."),
            ("TZ", ""),
        ] {
            assert_eq!(format(template, &may), expected, "{template}");
        }
        let new_year = at(2021, 1, 1, 0, 0, 0, 0);
        assert_eq!(
            format("IYYY-IW DDDth HH12 am", &new_year),
            "2020-53 001st 12 am"
        );
        assert_eq!(
            format("DDth DDTH", &at(2024, 1, 12, 0, 0, 0, 0)),
            "12th 12TH"
        );
        assert_eq!(format("FMDDth", &at(2024, 1, 22, 0, 0, 0, 0)), "22nd");
        assert_eq!(format("YYYY BC", &at(-43, 3, 15, 0, 0, 0, 0)), "0044 BC");
    }
}
