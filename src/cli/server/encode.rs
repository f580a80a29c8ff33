//! Arrow results as PostgreSQL rows: `Int64` → `int8`, `Int32` → `int4`, `Float64` →
//! `float8`, `Utf8` → `text`, `Boolean` → `bool`, `Timestamp` → `timestamp`, `Date32` →
//! `date`; other types are sent as their text (type `text`). Text and binary formats both.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, NaiveDate};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

use super::sqlstate;

/// The PostgreSQL type an Arrow column is sent as.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Date32 => Type::DATE,
        _ => Type::TEXT,
    }
}

/// The row description of a result.
pub fn fields(schema: &arrow::datatypes::Schema, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let format = format.map_or(FieldFormat::Text, |f| f.format_for(i));
            FieldInfo::new(
                field.name().clone(),
                None,
                None,
                pg_type(field.data_type()),
                format,
            )
        })
        .collect()
}

/// Encodes every row of `batches` per `fields` (one field per column, same order).
pub fn rows(batches: &[RecordBatch], fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
    let mut out = Vec::new();
    for batch in batches {
        if batch.num_columns() != fields.len() {
            return Err(sqlstate::error(
                sqlstate::INTERNAL_ERROR,
                format!(
                    "the result has {} columns where {} were described",
                    batch.num_columns(),
                    fields.len()
                ),
            ));
        }
        let columns: Vec<Column> = batch
            .columns()
            .iter()
            .zip(fields.iter())
            .map(|(array, field)| Column::new(array, field))
            .collect::<PgWireResult<_>>()?;
        for row in 0..batch.num_rows() {
            for column in &columns {
                column.encode(row, &mut encoder)?;
            }
            out.push(encoder.take_row());
        }
    }
    Ok(out)
}

/// A column prepared for encoding as its PostgreSQL type.
enum Column {
    Bool(BooleanArray),
    Int2(Int16Array),
    Int4(Int32Array),
    Int8(Int64Array),
    Float4(Float32Array, bool),
    Float8(Float64Array, bool),
    Timestamp(TimestampMicrosecondArray, bool),
    Date(Date32Array, bool),
    Text(Vec<Option<String>>),
}

fn cast_to<T: Clone + 'static>(array: &ArrayRef, to: &DataType) -> PgWireResult<T> {
    // Not safe: a value the described type cannot hold (a BIGINT result described as INT)
    // is an error, never a NULL.
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let cast = arrow::compute::cast_with_options(array, to, &options).map_err(|e| {
        sqlstate::error(
            sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
            format!("a value does not fit the column's described type {to}: {e}"),
        )
    })?;
    cast.as_any().downcast_ref::<T>().cloned().ok_or_else(|| {
        sqlstate::error(
            sqlstate::INTERNAL_ERROR,
            format!("cannot encode {to} values"),
        )
    })
}

impl Column {
    fn new(array: &ArrayRef, field: &FieldInfo) -> PgWireResult<Self> {
        let text = field.format() == FieldFormat::Text;
        // Unsigned and narrow types are widened to the described type (see `pg_type`).
        Ok(match *field.datatype() {
            // Cast, not downcast: a prepared statement's column may have changed its type
            // since it was described.
            Type::BOOL => Column::Bool(cast_to(array, &DataType::Boolean)?),
            Type::INT2 => Column::Int2(cast_to(array, &DataType::Int16)?),
            Type::INT4 => Column::Int4(cast_to(array, &DataType::Int32)?),
            Type::INT8 => Column::Int8(cast_to(array, &DataType::Int64)?),
            Type::FLOAT4 => Column::Float4(cast_to(array, &DataType::Float32)?, text),
            Type::FLOAT8 => Column::Float8(cast_to(array, &DataType::Float64)?, text),
            Type::TIMESTAMP => Column::Timestamp(
                cast_to(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?,
                text,
            ),
            Type::DATE => Column::Date(cast_to(array, &DataType::Date32)?, text),
            _ if matches!(
                array.data_type(),
                DataType::Duration(_) | DataType::Interval(_)
            ) =>
            {
                Column::Text(interval_texts(array)?)
            }
            _ => {
                let options = FormatOptions::default();
                let formatter = ArrayFormatter::try_new(array.as_ref(), &options)
                    .map_err(|e| sqlstate::error(sqlstate::INTERNAL_ERROR, e.to_string()))?;
                // Logical nulls: an untyped NULL column (`SELECT NULL`) has no null buffer.
                let nulls = array.logical_nulls();
                let text = (0..array.len())
                    .map(|i| {
                        let valid = nulls.as_ref().is_none_or(|n| n.is_valid(i));
                        valid.then(|| formatter.value(i).to_string())
                    })
                    .collect();
                Column::Text(text)
            }
        })
    }

    fn encode(&self, row: usize, encoder: &mut DataRowEncoder) -> PgWireResult<()> {
        fn get<A: Array, T>(array: &A, row: usize, value: impl Fn(&A) -> T) -> Option<T> {
            array.is_valid(row).then(|| value(array))
        }
        match self {
            Column::Bool(a) => encoder.encode_field(&get(a, row, |a| a.value(row))),
            Column::Int2(a) => encoder.encode_field(&get(a, row, |a| a.value(row))),
            Column::Int4(a) => encoder.encode_field(&get(a, row, |a| a.value(row))),
            Column::Int8(a) => encoder.encode_field(&get(a, row, |a| a.value(row))),
            Column::Float4(a, false) => encoder.encode_field(&get(a, row, |a| a.value(row))),
            Column::Float8(a, false) => encoder.encode_field(&get(a, row, |a| a.value(row))),
            Column::Float4(a, true) => encoder.encode_field(&get(a, row, |a| {
                let v = a.value(row);
                omendb::pg_float_text(f64::from(v), v)
            })),
            Column::Float8(a, true) => encoder.encode_field(&get(a, row, |a| {
                omendb::pg_float_text(a.value(row), a.value(row))
            })),
            Column::Timestamp(a, text) => {
                let value = get(a, row, |a| a.value(row))
                    .map(|micros| {
                        DateTime::from_timestamp_micros(micros)
                            .map(|t| (micros, t.naive_utc()))
                            .ok_or_else(|| out_of_range("timestamp", micros))
                    })
                    .transpose()?;
                if *text {
                    let text = value.and_then(|(micros, _)| omendb::pg_timestamp_text(micros));
                    encoder.encode_field(&text)
                } else {
                    encoder.encode_field(&value.map(|(_, at)| at))
                }
            }
            Column::Date(a, text) => {
                let value = get(a, row, |a| a.value(row))
                    .map(|days| {
                        // Arrow counts days from 1970-01-01, chrono from 0001-01-01 (day 1).
                        days.checked_add(719_163)
                            .and_then(NaiveDate::from_num_days_from_ce_opt)
                            .ok_or_else(|| out_of_range("date", i64::from(days)))
                    })
                    .transpose()?;
                if *text {
                    encoder.encode_field(&value.map(omendb::pg_date_text))
                } else {
                    encoder.encode_field(&value)
                }
            }
            Column::Text(text) => encoder.encode_field(&text.get(row).cloned().flatten()),
        }
    }
}

/// Intervals and durations as PostgreSQL prints an `interval` (`365 days`, `1 year 2 mons
/// 3 days 04:05:06.5`); Arrow's text is ISO 8601 (`PT31536000S`).
fn interval_texts(array: &ArrayRef) -> PgWireResult<Vec<Option<String>>> {
    let to = DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano);
    let intervals = match array.data_type() {
        // A duration (`timestamp - timestamp`) counts whole days, as PostgreSQL's result.
        DataType::Duration(_) => {
            let micros: arrow::array::DurationMicrosecondArray =
                cast_to(array, &DataType::Duration(TimeUnit::Microsecond))?;
            return Ok(micros
                .iter()
                .map(|v| {
                    v.map(|v| {
                        let day = 86_400_000_000;
                        let days = i32::try_from(v / day).unwrap_or(i32::MAX);
                        omendb::pg_interval_text(0, days, v % day)
                    })
                })
                .collect());
        }
        _ => cast_to::<arrow::array::IntervalMonthDayNanoArray>(array, &to)?,
    };
    Ok(intervals
        .iter()
        .map(|v| v.map(|v| omendb::pg_interval_text(v.months, v.days, v.nanoseconds / 1000)))
        .collect())
}

/// A date or timestamp the wire encoding cannot carry (beyond chrono's ±262,000 years).
fn out_of_range(what: &str, value: i64) -> pgwire::error::PgWireError {
    sqlstate::error(
        "22008",
        format!("{what} out of range: {value} (days or microseconds from 1970-01-01)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn timestamps_print_as_postgres_prints_them() {
        let at = |micros| omendb::pg_timestamp_text(micros).expect("in range");
        assert_eq!(at(1_704_164_645_000_000), "2024-01-02 03:04:05");
        assert_eq!(at(1_704_164_645_500_000), "2024-01-02 03:04:05.5");
        assert_eq!(at(1_704_164_645_000_001), "2024-01-02 03:04:05.000001");
        assert_eq!(at(1_704_153_600_000_000), "2024-01-02 00:00:00");
    }

    /// Checked against PostgreSQL 15's output for the same intervals.
    #[test]
    fn intervals_print_as_postgres_prints_them() {
        assert_eq!(omendb::pg_interval_text(0, 365, 0), "365 days");
        assert_eq!(
            omendb::pg_interval_text(14, 1, 3_600_000_000),
            "1 year 2 mons 1 day 01:00:00"
        );
        assert_eq!(omendb::pg_interval_text(0, 0, 0), "00:00:00");
        assert_eq!(
            omendb::pg_interval_text(0, -1, -7_200_500_000),
            "-1 days -02:00:00.5"
        );
        assert_eq!(
            omendb::pg_interval_text(1, 0, 61_000_001),
            "1 mon 00:01:01.000001"
        );
    }

    #[test]
    fn maps_arrow_types_to_postgres_types() {
        assert_eq!(pg_type(&DataType::Int64), Type::INT8);
        assert_eq!(pg_type(&DataType::Int32), Type::INT4);
        assert_eq!(pg_type(&DataType::UInt64), Type::INT8);
        assert_eq!(pg_type(&DataType::Float64), Type::FLOAT8);
        assert_eq!(pg_type(&DataType::Utf8), Type::TEXT);
        assert_eq!(pg_type(&DataType::Boolean), Type::BOOL);
        assert_eq!(
            pg_type(&DataType::Timestamp(TimeUnit::Microsecond, None)),
            Type::TIMESTAMP
        );
        assert_eq!(pg_type(&DataType::Date32), Type::DATE);
    }

    #[test]
    fn encodes_every_row_with_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("d", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(Date32Array::from(vec![Some(0), Some(19_000)])),
            ],
        )
        .expect("valid batch");
        let fields = Arc::new(fields(&schema, None));
        let rows = rows(&[batch], &fields).expect("encodes");
        assert_eq!(rows.len(), 2);
    }
}
