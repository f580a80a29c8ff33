//! Functions that build values, held to a size limit before they allocate.
//!
//! DataFusion's `repeat('x', 2147483647)` allocates whatever its arguments ask for: one
//! statement could take the process past its memory. [`bound`] wraps each function whose
//! result can be far larger than its arguments (`repeat`, `lpad`, `rpad`, `replace`,
//! `concat`, `overlay`, `translate`, `regexp_replace`, `array_repeat`, `string_to_array`,
//! `range`, `generate_series`), and [`concat_operator`] replaces the `||` of two strings, so that
//! before computing they check an upper bound of each result. The analyzer rule of
//! `crate::checked` puts them in place of each call in a plan, however the call was planned
//! (`overlay(... placing ...)` is planned without the function registry).
//!
//! It also wraps the functions whose one call runs long without checking the statement's
//! signal (regular expressions over long texts, array set operations over many elements):
//! a row's input is held to about a second of work, and a batch runs a few rows at a time
//! with a check of the signal between them ([`Growth::RegexWork`], [`Growth::ArrayWork`],
//! [`Growth::SearchWork`]).
//!
//! Invariants:
//! - No value one of these functions returns is larger than the value limit (1 GiB by
//!   default, PostgreSQL's), and the values of one batch together are no larger either.
//! - The check runs before the function allocates its result, on sizes computed from its
//!   arguments in time linear in the number of rows; a refusal is
//!   [`LimitKind::ValueBytes`](crate::LimitKind::ValueBytes) (SQLSTATE 54000).
//! - A wrapped function answers exactly as the original when its result fits: the wrapper
//!   delegates everything (types, coercion, simplification) to it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, simplify::ExprSimplifyResult, simplify::SimplifyContext,
};
use datafusion::prelude::Expr;

use crate::error::{Error, LimitKind};

/// The default limit of one value, in bytes: 1 GiB, as PostgreSQL's.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 30;

/// Largest value a function builds while the planner folds constants; a larger one is
/// built when the statement runs ([`crate::planning::folding`]).
const MAX_FOLDED_BYTES: usize = 1 << 20;

/// How a function's result size follows from its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `len(s) * n`.
    Repeat,
    /// `lpad(s, n [, fill])`: `n` characters of up to `len(fill)` bytes each, or `s`.
    Pad,
    /// `replace(s, from, to)`: each `from` in `s` may become `to`.
    Replace,
    /// `concat(a, b, ...)` and `a || b`: the sum of the arguments.
    Sum,
    /// `array_repeat(x, n)`: `n` elements.
    ArrayRepeat,
    /// `string_to_array(s, delimiter)`: the text's bytes and [`SPLIT_ELEMENT_BYTES`] for
    /// each of up to `len(s) / len(delimiter) + 1` elements (one a character for a NULL
    /// delimiter). A 1 GB text split at every other byte took 3.6 GB and ran 15 s past a 1 s
    /// timeout.
    Split,
    /// `range(start, stop [, step])`: `(stop - start) / step` 8-byte elements.
    Range,
    /// `translate(s, from, to)`: each character of `s` may become one of up to 4 bytes.
    Translate,
    /// `regexp_replace(s, pattern, replacement [, flags])`: each of up to `len(s) + 1`
    /// matches may become `replacement` (back-references are not counted).
    Regex,
    /// `encode(data, format)`: each byte becomes up to 4 (`escape`; `hex` 2, `base64` 4/3).
    Encode,
    /// `concat_ws(separator, a, b, ...)`: the arguments and a separator between each two.
    ConcatWs,
    /// `levenshtein(a, b)`: its work is the product of their lengths, so each is held to
    /// PostgreSQL's 255 characters (two of 200,000 kept a core busy for 40 s past the
    /// statement's timeout: one call cannot be interrupted).
    Levenshtein,
    /// `regexp_like`, `regexp_match`, `regexp_count`, `regexp_instr`, `regexp_substr` (and
    /// `regexp_replace`, besides its growth): one call over a text runs without a check of
    /// the statement's signal (500 MB took 16.5 s past a 1 s timeout), so the text is held
    /// to [`MAX_REGEX_WORK`].
    RegexWork,
    /// The array functions that hash or sort their elements (`array_distinct`,
    /// `array_intersect`, ...): one call's work grows with its elements (30 million took
    /// 8.5 s past a 1 s timeout), so a row's arrays are held to [`MAX_ARRAY_WORK`] elements.
    ArrayWork,
    /// `strpos(text, search)` (`position`, `instr`): one call's work is the product of
    /// the two lengths (a 100 MB text and a 10 KB search ran 13.8 s past a 1 s timeout),
    /// held to [`MAX_SEARCH_WORK`] a row.
    SearchWork,
    /// Not a growth: `chr(n)` refuses what PostgreSQL refuses (a NUL, `54000`; a negative
    /// number, `22023`) before DataFusion's, which returns a NUL.
    Chr,
    /// Not a growth: `to_hex` of an `INTEGER` (or `SMALLINT`) prints its 32 bits, as
    /// PostgreSQL's `to_hex(int4)` (DataFusion's printed 64).
    ToHex,
}

/// The most work one regular-expression call takes in a row (about a second): its text's
/// bytes times the pattern's repetition factor (at least [`MIN_REGEX_FACTOR`]), so a text
/// of at most 32 MiB, less for patterns with counted repetitions.
const MAX_REGEX_WORK: u128 = 1 << 27;
/// The factor of a pattern without counted repetitions.
const MIN_REGEX_FACTOR: u128 = 4;
/// What an element of a split text costs besides its bytes: its string offset, its share of
/// the list's offsets and validity, and the copies `unnest` makes of it.
const SPLIT_ELEMENT_BYTES: u128 = 8;
/// The most elements one call of an array set function takes in one row (about a second).
const MAX_ARRAY_WORK: u128 = 4 << 20;
/// The largest product of text and search lengths one `strpos` takes (about a second).
const MAX_SEARCH_WORK: u128 = 1 << 36;

/// An upper bound of how many times a matcher may look at each byte for `pattern`: the
/// sum of its counted repetitions (`x{100}` counts 100).
fn repetition_factor(pattern: &str) -> u128 {
    let mut factor: u128 = 1;
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let most = rest[..close]
            .split(',')
            .filter_map(|n| n.trim().parse::<u128>().ok())
            .max()
            .unwrap_or(0);
        factor = factor.saturating_add(most);
        rest = &rest[close + 1..];
    }
    factor
}

/// A function whose results are checked against a size limit before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    limit: usize,
}

/// `function` held to `limit` bytes per value and per batch, if it is one that
/// builds large values; `None`: it needs no bound.
pub(crate) fn bound(function: &Arc<ScalarUDF>, limit: usize) -> Option<ScalarUDF> {
    let growth = match function.name() {
        "repeat" => Growth::Repeat,
        "lpad" | "rpad" => Growth::Pad,
        "replace" => Growth::Replace,
        "concat" | "overlay" => Growth::Sum,
        "translate" => Growth::Translate,
        "regexp_replace" => Growth::Regex,
        "encode" => Growth::Encode,
        "concat_ws" => Growth::ConcatWs,
        "levenshtein" => Growth::Levenshtein,
        "array_repeat" => Growth::ArrayRepeat,
        "string_to_array" => Growth::Split,
        "range" | "generate_series" => Growth::Range,
        "regexp_like" | "regexp_match" | "regexp_count" | "regexp_instr" | "regexp_substr" => {
            Growth::RegexWork
        }
        "array_distinct" | "array_intersect" | "array_union" | "array_except" | "array_sort"
        | "array_has_all" | "array_has_any" | "array_remove_all" | "array_replace_all"
        | "array_positions" | "array_resize" | "flatten" => Growth::ArrayWork,
        "strpos" => Growth::SearchWork,
        "chr" => Growth::Chr,
        "to_hex" => Growth::ToHex,
        _ => return None,
    };
    Some(ScalarUDF::new_from_impl(Bounded {
        inner: Arc::clone(function),
        growth,
        limit,
    }))
}

/// `inner`'s simplification, but for `regexp_like`, which stays a call: it simplifies into
/// the `~` operator, whose kernel would run on texts of any length.
pub(crate) fn simplify_inner(
    inner: &ScalarUDF,
    args: Vec<Expr>,
    info: &SimplifyContext,
) -> Result<ExprSimplifyResult> {
    if inner.name() == "regexp_like" {
        return Ok(ExprSimplifyResult::Original(args));
    }
    inner.simplify(args, info)
}

/// `text ~ pattern` (`~*`, `!~`, `!~*`) as the bounded `regexp_like` (see the module docs);
/// `None` for other operators.
pub(crate) fn regex_operator(
    left: &Expr,
    op: datafusion::logical_expr::Operator,
    right: &Expr,
    limit: usize,
) -> Option<Expr> {
    use datafusion::logical_expr::Operator;
    let (insensitive, negated) = match op {
        Operator::RegexMatch => (false, false),
        Operator::RegexIMatch => (true, false),
        Operator::RegexNotMatch => (false, true),
        Operator::RegexNotIMatch => (true, true),
        _ => return None,
    };
    let like = bound(&datafusion::functions::regex::regexp_like(), limit)?;
    let mut args = vec![left.clone(), right.clone()];
    if insensitive {
        args.push(datafusion::prelude::lit("i"));
    }
    let call = Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
        Arc::new(like),
        args,
    ));
    Some(if negated { !call } else { call })
}

/// The `||` of two strings, held to `limit` (see the module docs).
pub(crate) fn concat_operator(limit: usize) -> ScalarUDF {
    ScalarUDF::new_from_impl(ConcatOperator {
        signature: Signature::any(2, datafusion::logical_expr::Volatility::Immutable),
        limit,
    })
}

/// The methods of a `ScalarUDFImpl` that wraps a function (its field `inner`, an
/// `Arc<ScalarUDF>`) and answers as it does in all but `invoke_with_args`: name, types,
/// coercion, simplification and documentation are the inner function's.
macro_rules! delegate_to_inner {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn aliases(&self) -> &[String] {
            self.inner.aliases()
        }
        fn signature(&self) -> &Signature {
            self.inner.signature()
        }
        fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
            self.inner.inner().return_type(arg_types)
        }
        fn return_field_from_args(
            &self,
            args: ReturnFieldArgs,
        ) -> Result<arrow::datatypes::FieldRef> {
            self.inner.return_field_from_args(args)
        }
        fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
            self.inner.coerce_types(arg_types)
        }
        fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
            crate::bounded::simplify_inner(&self.inner, args, info)
        }
        fn short_circuits(&self) -> bool {
            self.inner.short_circuits()
        }
        fn documentation(&self) -> Option<&Documentation> {
            self.inner.documentation()
        }
    };
}
pub(crate) use delegate_to_inner;

impl ScalarUDFImpl for Bounded {
    delegate_to_inner!();
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match self.growth {
            Growth::Levenshtein => check_levenshtein(&args.args, args.number_rows)?,
            Growth::RegexWork | Growth::ArrayWork | Growth::SearchWork => {
                return invoke_in_chunks(&self.inner, self.growth, args);
            }
            Growth::Regex => {
                check(self.growth, &args.args, args.number_rows, self.limit)?;
                return invoke_in_chunks(&self.inner, Growth::RegexWork, args);
            }
            Growth::Chr => check_chr(&args.args)?,
            Growth::ToHex => return self.inner.invoke_with_args(hex_of_32_bits(args)?),
            _ => check(self.growth, &args.args, args.number_rows, self.limit)?,
        }
        self.inner.invoke_with_args(args)
    }
}

/// PostgreSQL's longest argument of `levenshtein`, in characters.
const MAX_LEVENSHTEIN_CHARS: usize = 255;

/// Fails, as PostgreSQL, when a text argument of `levenshtein` is longer than
/// [`MAX_LEVENSHTEIN_CHARS`].
fn check_levenshtein(args: &[ColumnarValue], rows: usize) -> Result<()> {
    let too_long =
        |t: &str| t.len() > MAX_LEVENSHTEIN_CHARS && t.chars().count() > MAX_LEVENSHTEIN_CHARS;
    for arg in args {
        let array = arg.to_array(if matches!(arg, ColumnarValue::Scalar(_)) {
            1
        } else {
            rows
        })?;
        let long = match array.data_type() {
            DataType::Utf8 => array.as_string::<i32>().iter().flatten().any(too_long),
            DataType::LargeUtf8 => array.as_string::<i64>().iter().flatten().any(too_long),
            DataType::Utf8View => array.as_string_view().iter().flatten().any(too_long),
            _ => false,
        };
        if long {
            return datafusion::common::exec_err!(
                "levenshtein argument exceeds maximum length of {MAX_LEVENSHTEIN_CHARS} characters"
            );
        }
    }
    Ok(())
}

/// PostgreSQL's refusals of `chr`'s argument that DataFusion's `chr` does not make.
fn check_chr(args: &[ColumnarValue]) -> Result<()> {
    let Some(code) = args.first() else {
        return Ok(());
    };
    let codes = cast(&code.to_array(1)?, &DataType::Int64)?;
    for code in codes.as_primitive::<Int64Type>().iter().flatten() {
        if code == 0 {
            return datafusion::common::exec_err!("null character not permitted");
        }
        if code < 0 {
            return datafusion::common::exec_err!("character number must be positive");
        }
    }
    Ok(())
}

/// `args` of `to_hex` with an `INTEGER` or `SMALLINT` as its 32 bits (`UInt32`).
fn hex_of_32_bits(mut args: ScalarFunctionArgs) -> Result<ScalarFunctionArgs> {
    let Some(value) = args.args.first() else {
        return Ok(args);
    };
    if !matches!(
        value.data_type(),
        DataType::Int8 | DataType::Int16 | DataType::Int32
    ) {
        return Ok(args);
    }
    let bits = |array: &ArrayRef| -> Result<ArrayRef> {
        let wide = cast(array, &DataType::Int32)?;
        let unsigned: arrow::array::UInt32Array = wide
            .as_primitive::<arrow::datatypes::Int32Type>()
            .unary(|v| v as u32);
        Ok(Arc::new(unsigned))
    };
    args.args[0] = match value {
        ColumnarValue::Array(array) => ColumnarValue::Array(bits(array)?),
        ColumnarValue::Scalar(scalar) => ColumnarValue::Scalar(
            datafusion::common::ScalarValue::try_from_array(&bits(&scalar.to_array()?)?, 0)?,
        ),
    };
    if let Some(field) = args.arg_fields.first_mut() {
        *field = Arc::new(field.as_ref().clone().with_data_type(DataType::UInt32));
    }
    Ok(args)
}

/// The work of each row of a call ([`Growth::RegexWork`]: its text's bytes times its
/// pattern's repetition factor; [`Growth::ArrayWork`]: its arrays' elements;
/// [`Growth::SearchWork`]: its text's bytes times its search's), one entry when every
/// argument is constant.
fn row_work(work: Growth, args: &[ColumnarValue], rows: usize) -> Result<Vec<u128>> {
    let constant = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let rows = if constant { 1 } else { rows };
    if work == Growth::ArrayWork {
        let mut per_row = vec![0u128; rows];
        for arg in args {
            let array = arg.to_array(rows)?;
            let lengths: Vec<u128> = match array.data_type() {
                DataType::List(_) => list_lengths(array.as_list::<i32>()),
                DataType::LargeList(_) => list_lengths(array.as_list::<i64>()),
                _ => continue,
            };
            for (total, length) in per_row.iter_mut().zip(lengths) {
                *total = total.saturating_add(length);
            }
        }
        return Ok(per_row);
    }
    let lengths = |arg: Option<&ColumnarValue>| -> Result<Vec<u128>> {
        match arg.map(|text| Column::of(text, rows)).transpose()? {
            Some(Column::Lengths(lengths)) => Ok(lengths),
            _ => Ok(vec![0; rows]),
        }
    };
    let texts = lengths(args.first())?;
    if work == Growth::RegexWork {
        // A counted repetition multiplies the matcher's work (`\w{100}z` took 1.2 µs a byte).
        // A constant pattern (the usual case) is read once, not once a row.
        let factors = match args.get(1) {
            Some(ColumnarValue::Array(patterns)) => {
                let patterns = cast(patterns, &DataType::Utf8)?;
                let patterns = patterns.as_string::<i32>();
                patterns
                    .iter()
                    .map(|pattern| pattern.map_or(1, repetition_factor))
                    .collect()
            }
            Some(ColumnarValue::Scalar(pattern)) => {
                let pattern = cast(&pattern.to_array()?, &DataType::Utf8)?;
                let pattern = pattern.as_string::<i32>().iter().next().flatten();
                vec![pattern.map_or(1, repetition_factor); rows]
            }
            None => vec![1; rows],
        };
        return Ok(texts
            .iter()
            .zip(factors)
            .map(|(text, factor)| text.saturating_mul(factor.max(MIN_REGEX_FACTOR)))
            .collect());
    }
    if work == Growth::SearchWork {
        let searches = lengths(args.get(1))?;
        return Ok(texts
            .iter()
            .zip(searches)
            .map(|(text, search)| text.saturating_mul(search))
            .collect());
    }
    Ok(texts)
}

/// Runs `inner` on `args` as [`Growth::RegexWork`], [`Growth::ArrayWork`] or
/// [`Growth::SearchWork`] say: refused
/// when one row is more than one uninterruptible call may take, and otherwise on runs of
/// rows of at most that much work each, checking the statement's signal between them, so
/// that a batch of many large rows stops at its timeout too.
fn invoke_in_chunks(
    inner: &ScalarUDF,
    work: Growth,
    args: ScalarFunctionArgs,
) -> Result<ColumnarValue> {
    crate::interrupt::check_current_in_plan()?;
    let (limit, unit) = match work {
        Growth::ArrayWork => (MAX_ARRAY_WORK, "elements"),
        Growth::SearchWork => (MAX_SEARCH_WORK, "(text bytes times search bytes)"),
        _ => (MAX_REGEX_WORK, "(text bytes times pattern repetitions)"),
    };
    let per_row = row_work(work, &args.args, args.number_rows)?;
    let most = per_row.iter().copied().max().unwrap_or(0);
    if most > limit {
        return datafusion::common::exec_err!(
            "argument of {} too large: {most} {unit}, at most {limit}: one call cannot be \
             interrupted, so its input is bounded",
            inner.name()
        );
    }
    let mut runs = Vec::new();
    let (mut start, mut run_work) = (0, 0u128);
    for (row, row_work) in per_row.iter().enumerate() {
        if row > start && run_work + row_work > limit {
            runs.push(start..row);
            (start, run_work) = (row, 0);
        }
        run_work += row_work;
    }
    if runs.is_empty() || per_row.len() != args.number_rows {
        return inner.invoke_with_args(args);
    }
    runs.push(start..args.number_rows);
    let mut outputs = Vec::with_capacity(runs.len());
    for run in runs {
        crate::interrupt::check_current_in_plan()?;
        let sliced = args
            .args
            .iter()
            .map(|arg| match arg {
                ColumnarValue::Array(array) => {
                    ColumnarValue::Array(array.slice(run.start, run.len()))
                }
                ColumnarValue::Scalar(value) => ColumnarValue::Scalar(value.clone()),
            })
            .collect();
        let output = inner.invoke_with_args(ScalarFunctionArgs {
            args: sliced,
            arg_fields: args.arg_fields.clone(),
            number_rows: run.len(),
            return_field: Arc::clone(&args.return_field),
            config_options: Arc::clone(&args.config_options),
        })?;
        outputs.push(output.into_array(run.len())?);
    }
    let parts: Vec<&dyn Array> = outputs.iter().map(|a| a.as_ref()).collect();
    Ok(ColumnarValue::Array(arrow::compute::concat(&parts)?))
}

fn list_lengths<O: arrow::array::OffsetSizeTrait>(
    list: &arrow::array::GenericListArray<O>,
) -> Vec<u128> {
    list.offsets()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_usize() as u128)
        .collect()
}

/// `a || b` on strings: NULL when either is NULL, checked as [`Growth::Sum`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConcatOperator {
    signature: Signature,
    limit: usize,
}

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        "checked_concat"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Utf8))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        check(Growth::Sum, &args.args, args.number_rows, self.limit)?;
        let [left, right] = args.args.as_slice() else {
            return datafusion::common::exec_err!("|| takes two arguments");
        };
        let scalar = matches!(
            (left, right),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let rows = if scalar { 1 } else { args.number_rows };
        let left = cast(&left.to_array(rows)?, &DataType::Utf8)?;
        let right = cast(&right.to_array(rows)?, &DataType::Utf8)?;
        let (left, right) = (left.as_string::<i32>(), right.as_string::<i32>());
        let joined: arrow::array::StringArray = left
            .iter()
            .zip(right.iter())
            .map(|(a, b)| Some(format!("{}{}", a?, b?)))
            .collect();
        let joined = cast(&joined, args.return_field.data_type())?;
        crate::checked::answer(joined, scalar)
    }
}

/// Fails when a result computed from `args` could exceed `limit` bytes, or the results of
/// the batch together could.
fn check(growth: Growth, args: &[ColumnarValue], rows: usize, limit: usize) -> Result<()> {
    // Each call also stops a cancelled statement: a join's filter evaluates it many times
    // within one poll of the join, where no batch boundary checks.
    crate::interrupt::check_current_in_plan()?;
    let constant = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    // A constant result is built once and then repeated for each row of the batch.
    let repeats = if constant { rows } else { 1 };
    let rows = if constant { 1 } else { rows };
    // While constants are folded, a large value is left for execution (see `folding`).
    let limit = if constant && crate::planning::folding() {
        limit.min(MAX_FOLDED_BYTES)
    } else {
        limit
    };
    let columns = args
        .iter()
        .map(|arg| Column::of(arg, rows))
        .collect::<Result<Vec<_>>>()?;
    let mut total: u128 = 0;
    for row in 0..rows {
        let size = row_bound(growth, &columns, row);
        total = total.saturating_add(size);
        if size > limit as u128 || total > limit as u128 {
            let found = usize::try_from(size.max(total)).unwrap_or(usize::MAX);
            let error = Error::Limit {
                kind: LimitKind::ValueBytes,
                found,
                limit,
            };
            return Err(datafusion::error::DataFusionError::External(Box::new(
                error,
            )));
        }
    }
    // The batch's results together, as the query's meter will count them.
    let batch = if repeats > 1 {
        let peak = crate::large_literal::EXPANSION_PEAK as u128;
        total.saturating_mul(repeats as u128).saturating_mul(peak)
    } else {
        total
    };
    crate::interrupt::check_current_growth(usize::try_from(batch).unwrap_or(usize::MAX))
}

/// The bound of one row's result, in bytes (saturating).
fn row_bound(growth: Growth, columns: &[Column], row: usize) -> u128 {
    let bytes = |i: usize| columns.get(i).map_or(0, |c| c.bytes(row));
    let number = |i: usize| columns.get(i).and_then(|c| c.number(row));
    let count = |i: usize| number(i).map_or(0, |n| u128::try_from(n).unwrap_or(0));
    match growth {
        Growth::Repeat => bytes(0).saturating_mul(count(1)),
        Growth::Pad => {
            let per_char = if columns.len() > 2 {
                bytes(2).clamp(1, 4)
            } else {
                1
            };
            bytes(0).max(count(1).saturating_mul(per_char))
        }
        Growth::Replace => {
            let (text, from, to) = (bytes(0), bytes(1), bytes(2));
            match from {
                0 => text,
                from => text.saturating_add((text / from).saturating_mul(to)),
            }
        }
        Growth::Sum => (0..columns.len()).map(bytes).sum(),
        Growth::Translate | Growth::Encode => bytes(0).saturating_mul(4),
        // Checked apart (`check_levenshtein`, `invoke_in_chunks`).
        Growth::Levenshtein
        | Growth::RegexWork
        | Growth::ArrayWork
        | Growth::SearchWork
        | Growth::Chr
        | Growth::ToHex => 8,
        Growth::ConcatWs => {
            let separators = (columns.len().saturating_sub(2)) as u128;
            (1..columns.len())
                .map(bytes)
                .sum::<u128>()
                .saturating_add(bytes(0).saturating_mul(separators))
        }
        Growth::Regex => bytes(0).saturating_add((bytes(0) + 1).saturating_mul(bytes(2))),
        Growth::ArrayRepeat => count(1).saturating_mul(bytes(0).max(16)),
        Growth::Split => {
            let elements = bytes(0) / bytes(1).max(1) + 1;
            bytes(0).saturating_add(elements.saturating_mul(SPLIT_ELEMENT_BYTES))
        }
        Growth::Range => {
            let (start, stop, step) = match columns.len() {
                1 => (Some(0), number(0), Some(1)),
                2 => (number(0), number(1), Some(1)),
                _ => (number(0), number(1), number(2)),
            };
            match (start, stop, step) {
                (Some(start), Some(stop), Some(step)) if step != 0 => {
                    let span = (i128::from(stop) - i128::from(start)).unsigned_abs();
                    // 8 bytes an element, counted 4 times: unnesting the list (the common
                    // use) took 27 bytes an element at its peak.
                    (span / i128::from(step).unsigned_abs() + 1).saturating_mul(32)
                }
                _ => 0,
            }
        }
    }
}

/// One argument's sizes (for strings, binaries and lists) or integers, row by row.
enum Column {
    Lengths(Vec<u128>),
    Numbers(Vec<Option<i64>>),
    Other,
}

impl Column {
    fn of(arg: &ColumnarValue, rows: usize) -> Result<Self> {
        let array: ArrayRef = arg.to_array(rows)?;
        let data_type = array.data_type();
        if data_type.is_integer() {
            let numbers = cast(&array, &DataType::Int64)?;
            let numbers = numbers.as_primitive::<Int64Type>();
            return Ok(Self::Numbers(numbers.iter().collect()));
        }
        let lengths: Vec<u128> = match data_type {
            DataType::Utf8 => array.as_string::<i32>().iter().map(len).collect(),
            DataType::LargeUtf8 => array.as_string::<i64>().iter().map(len).collect(),
            DataType::Utf8View => array.as_string_view().iter().map(len).collect(),
            DataType::Binary => array.as_binary::<i32>().iter().map(blen).collect(),
            DataType::LargeBinary => array.as_binary::<i64>().iter().map(blen).collect(),
            DataType::BinaryView => array.as_binary_view().iter().map(blen).collect(),
            _ => return Ok(Self::Other),
        };
        Ok(Self::Lengths(lengths))
    }

    fn bytes(&self, row: usize) -> u128 {
        match self {
            Self::Lengths(lengths) => lengths.get(row).copied().unwrap_or(0),
            Self::Numbers(_) => 8,
            Self::Other => 16,
        }
    }

    fn number(&self, row: usize) -> Option<i64> {
        match self {
            Self::Numbers(numbers) => numbers.get(row).copied().flatten(),
            _ => None,
        }
    }
}

fn len(text: Option<&str>) -> u128 {
    text.map_or(0, |t| t.len() as u128)
}

fn blen(bytes: Option<&[u8]>) -> u128 {
    bytes.map_or(0, |b| b.len() as u128)
}
