//! Limits every SQL statement is held to before it is planned, so that no statement, of any
//! size a client can send, overflows a thread's stack or runs without bound in the parser.
//!
//! Invariants:
//! - A statement longer than [`SqlLimits::max_statement_bytes`] is refused unparsed.
//! - A parsed statement whose expressions nest deeper than
//!   [`SqlLimits::max_expression_depth`] (operators, function arguments, subqueries, set
//!   operations such as `UNION` chains) is refused before it is planned. The check stops
//!   descending at the limit, so it never recurses deeper than the limit itself.
//! - Parsing and dropping a statement recurse in proportion to its nesting, which is at most
//!   its length: both run on a stack grown for the text's length (`stacker`), so the thread
//!   that calls [`parse_sql`] needs no more stack than any other caller of `Db::sql`.
//! - Queries nest at most [`SqlLimits::max_subquery_depth`] deep (DataFusion's planner
//!   takes time exponential in that nesting), and placeholders are `$1`..`$65535`, checked
//!   before anything allocates by a placeholder's number.
//! - A numeric literal that is not a finite number (`1e400`) is refused, never stored as
//!   infinity.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, CharacterLength, DataType as SqlDataType, ExactNumberInfo, Expr,
    Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, Query, Select, SetExpr, TableFactor, TableWithJoins, UnaryOperator, Value, Visit,
    Visitor, With, visit_expressions_mut, visit_relations,
};
use datafusion::sql::sqlparser::ast::{
    Distinct, GroupByExpr, OrderByKind, SetOperator, SetQuantifier, WindowType,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, LimitKind, Result};

/// Default [`SqlLimits::max_statement_bytes`]: 4 MiB.
pub const DEFAULT_MAX_STATEMENT_BYTES: usize = 4 << 20;

/// Default [`SqlLimits::max_expression_depth`].
pub const DEFAULT_MAX_EXPRESSION_DEPTH: usize = 1024;

/// Default [`SqlLimits::max_subquery_depth`].
pub const DEFAULT_MAX_SUBQUERY_DEPTH: usize = 16;

/// The highest placeholder number, `$65535`, as PostgreSQL (a Bind message counts its
/// parameters in 16 bits).
pub const MAX_PLACEHOLDER: usize = u16::MAX as usize;

/// The most dimensions an `ARRAY[...]` constructor may nest, as PostgreSQL.
pub const MAX_ARRAY_DIMENSIONS: usize = 6;

/// Most entries of a select list, as PostgreSQL's.
pub const MAX_TARGET_LIST: usize = 1664;

/// Most arguments of a function call, as PostgreSQL's.
pub const MAX_FUNCTION_ARGUMENTS: usize = 100;

/// Most keys of one `ORDER BY`, `GROUP BY`, `PARTITION BY` or `DISTINCT ON`: DataFusion's
/// physical planning takes time quadratic in their number (500 keys: 1.2 s, 1664: 9.5 s,
/// not interruptible inside one optimizer rule).
pub const MAX_SORT_KEYS: usize = 256;

/// How deep `WITH` queries may build on each other (`c2 AS (SELECT ... FROM c1)`): each
/// reference is planned as a copy of the query it names, and planning a chain costs the
/// square of its length (a chain of 2,000 took 1.6 GB and 5.7 s to plan, unstoppable by the
/// statement timeout; 5,000 went past 6 GB).
pub const MAX_CTE_DEPTH: usize = 128;

/// How many queries the `WITH` queries of one statement may expand to, each reference
/// counting the whole query it names (two references to the one before at each step
/// double it).
pub const MAX_CTE_EXPANSION: u64 = 10_000;

/// Most items of one `IN (...)` list: each costs about 1 KB and 15 µs to plan.
pub const MAX_IN_LIST: usize = 100_000;

/// Most tables, derived tables and table functions one `FROM` list joins: DataFusion's
/// planning takes time cubic in their number, in steps that cannot be interrupted (1,000
/// took 40 s, past any statement timeout; 200 take 0.3 s). PostgreSQL has no such limit.
pub const MAX_FROM_ITEMS: usize = 200;

/// Most tables, derived tables and table functions one statement reads, in all its
/// `FROM` lists.
pub const MAX_RELATIONS: usize = 2048;

/// Most `WHEN` branches of one `CASE`: each is planned and checked in steps the statement
/// timeout cannot stop (190,000 answered a 1 s timeout after 7 s).
pub const MAX_CASE_BRANCHES: usize = 10_000;

/// Most different windows (`OVER (...)` clauses) one statement computes: each is a window
/// node that copies the schema of all before it, so planning takes time cubic in their number
/// (1,000 took 50 s past a 1 s timeout, 128 take 0.1 s).
pub const MAX_WINDOWS: usize = 128;

/// Parenthesised nesting the parser itself follows (each level costs it several frames).
const MAX_PARSER_RECURSION: usize = 256;

/// How deep parentheses may nest in a statement's text, checked on its tokens before it is
/// parsed: the parser backtracks through nested calls and casts in time that grows
/// exponentially with their depth (300 nested `CAST(` of a column, 4.8 KB, never finished).
pub const MAX_PARENTHESIS_DEPTH: usize = 100;

/// The longest run of prefixes (keywords, operators and opening brackets with no name,
/// literal or closing bracket between them) in a statement's text, checked on its tokens
/// before it is parsed: the parser follows some prefixes (`INTERVAL`, `DATE`, `|/`, `PRIOR`)
/// without counting them, so 14,000 `INTERVAL`s overflowed its stack, and it backtracks
/// through `ARRAY[` past 256 levels for ever. SQL a person writes has runs of a dozen.
pub const MAX_PREFIX_RUN: usize = 64;

/// Stack kept free before parsing; grown when less is left.
const RED_ZONE: usize = 1 << 20;

/// Stack bytes reserved per byte of statement text for parsing and dropping its syntax tree
/// (a level of nesting takes at least two bytes of text and well under 512 bytes of stack).
const STACK_PER_BYTE: usize = 256;

/// Stack a statement within the limits may need to be planned and run: a level of nesting
/// costs DataFusion's planner and evaluator a few KiB (a 1000-deep sum overflowed a 2 MiB
/// thread), so 1024 levels fit in 32 MiB with room to spare.
const PLAN_STACK: usize = 32 << 20;

/// Runs `work` with at least [`PLAN_STACK`] of stack: on the calling thread when it has that
/// much left (the server's threads do), else on a stack allocated for the call.
pub(crate) fn with_plan_stack<T>(work: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(PLAN_STACK, 2 * PLAN_STACK, work)
}

/// The limits of one SQL statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlLimits {
    /// The longest statement text accepted, in bytes.
    pub max_statement_bytes: usize,
    /// The deepest nesting of expressions accepted.
    pub max_expression_depth: usize,
    /// The deepest nesting of queries accepted: subqueries in expressions, derived tables
    /// and CTEs, the statement's own query being depth 1.
    pub max_subquery_depth: usize,
    /// The largest value (string, binary, list) a function or operator may build, in bytes;
    /// also the most one such function may build for one batch of rows.
    pub max_value_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            max_statement_bytes: DEFAULT_MAX_STATEMENT_BYTES,
            max_expression_depth: DEFAULT_MAX_EXPRESSION_DEPTH,
            max_subquery_depth: DEFAULT_MAX_SUBQUERY_DEPTH,
            max_value_bytes: crate::bounded::DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// Parses `text` into statements and checks each against `limits`.
pub fn parse_sql(text: &str, limits: &SqlLimits) -> Result<VecDeque<DfStatement>> {
    if text.len() > limits.max_statement_bytes {
        return Err(Error::Limit {
            kind: LimitKind::StatementBytes,
            found: text.len(),
            limit: limits.max_statement_bytes,
        });
    }
    check_nesting(text)?;
    let stack = RED_ZONE + text.len().saturating_mul(STACK_PER_BYTE);
    stacker::maybe_grow(stack, stack, || {
        let statements = DFParserBuilder::new(text)
            .with_dialect(&GenericDialect {})
            .with_recursion_limit(MAX_PARSER_RECURSION)
            .build()
            .and_then(|mut parser| at_most(&mut parser, MAX_STATEMENTS))
            .map_err(|error| match error {
                // Nesting past what the parser follows is the same limit as ours.
                datafusion::error::DataFusionError::SQL(parser_error, _)
                    if matches!(
                        *parser_error,
                        datafusion::sql::sqlparser::parser::ParserError::RecursionLimitExceeded
                    ) =>
                {
                    Error::Limit {
                        kind: LimitKind::ExpressionDepth,
                        found: MAX_PARSER_RECURSION + 1,
                        limit: MAX_PARSER_RECURSION,
                    }
                }
                other => other.into(),
            })?;
        // On an error the statements are dropped here, on the grown stack.
        let mut statements = statements;
        for statement in &mut statements {
            check(statement, limits)?;
            // Before the literals change form: their columns are named as written.
            crate::names::name_columns(statement);
            postgres_operators(statement);
        }
        Ok(statements)
    })
}

/// Statements one text may hold: their syntax trees are built before the first runs (about
/// 14 KB each for `SELECT 1`), so a 4 MiB text of `SELECT 1;` took 6.5 GB.
pub const MAX_STATEMENTS: usize = 1000;

/// The parser's statements, as `DFParser::parse_statements` parses them, but at most `limit`
/// of them: one more is refused before it is parsed.
fn at_most(
    parser: &mut datafusion::sql::parser::DFParser<'_>,
    limit: usize,
) -> std::result::Result<VecDeque<DfStatement>, datafusion::error::DataFusionError> {
    use datafusion::sql::sqlparser::parser::ParserError;
    use datafusion::sql::sqlparser::tokenizer::Token;
    let mut statements = VecDeque::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        let next = parser.parser.peek_token();
        if next == Token::EOF {
            return Ok(statements);
        }
        if expecting_delimiter {
            return Err(datafusion::error::DataFusionError::SQL(
                Box::new(ParserError::ParserError(format!(
                    "Expected: end of statement, found: {next}"
                ))),
                None,
            ));
        }
        if statements.len() >= limit {
            return Err(datafusion::error::DataFusionError::External(Box::new(
                Error::Limit {
                    kind: LimitKind::Statements,
                    found: statements.len() + 1,
                    limit,
                },
            )));
        }
        expecting_delimiter = true;
        // PostgreSQL's `ABORT [WORK | TRANSACTION] [AND [NO] CHAIN]`, which the parser does
        // not know: `ROLLBACK`.
        if let Token::Word(word) = &next.token
            && word.quote_style.is_none()
            && word.value.eq_ignore_ascii_case("abort")
        {
            parser.parser.next_token();
            let chain = parser.parser.parse_commit_rollback_chain()?;
            statements.push_back(DfStatement::Statement(Box::new(
                datafusion::sql::sqlparser::ast::Statement::Rollback {
                    chain,
                    savepoint: None,
                },
            )));
            continue;
        }
        statements.push_back(parser.parse_statement()?);
    }
}

/// Refuses text whose parentheses and brackets nest deeper than [`MAX_PARENTHESIS_DEPTH`],
/// or that holds a run of prefixes longer than [`MAX_PREFIX_RUN`] (tokenizing is linear;
/// text that does not tokenize is left to the parser's own error).
fn check_nesting(text: &str) -> Result<()> {
    // Texts that cannot nest past the limits are not tokenized twice (point queries). A
    // run in a text of 256 bytes or less is too short to harm the parser (its own limit is
    // 256 levels), so runs are checked in longer texts only.
    let brackets = text.bytes().filter(|&b| b == b'(' || b == b'[').count();
    if brackets <= MAX_PARENTHESIS_DEPTH && text.len() <= MAX_PARSER_RECURSION {
        return Ok(());
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).tokenize() else {
        return Ok(());
    };
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut run, mut longest) = (0usize, 0usize);
    for token in &tokens {
        match token {
            Token::Whitespace(_) => continue,
            Token::LParen | Token::LBracket => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            _ => {}
        }
        if ends_prefix_run(token) {
            run = 0;
        } else {
            run += 1;
            longest = longest.max(run);
        }
    }
    if deepest > MAX_PARENTHESIS_DEPTH {
        return Err(Error::Limit {
            kind: LimitKind::ExpressionDepth,
            found: deepest,
            limit: MAX_PARENTHESIS_DEPTH,
        });
    }
    if longest > MAX_PREFIX_RUN {
        return Err(Error::Limit {
            kind: LimitKind::ExpressionDepth,
            found: longest,
            limit: MAX_PREFIX_RUN,
        });
    }
    Ok(())
}

/// Whether `token` is an operand or ends one (a name, a literal, a closing bracket, a
/// comma), so that it ends a run of prefixes: keywords, operators and opening brackets.
fn ends_prefix_run(token: &Token) -> bool {
    match token {
        Token::Word(word) => word.keyword == Keyword::NoKeyword || word.quote_style.is_some(),
        Token::LParen | Token::LBracket => false,
        Token::RParen | Token::RBracket | Token::Comma | Token::SemiColon => true,
        Token::Number(..) | Token::SingleQuotedString(_) | Token::Placeholder(_) => true,
        // Other literals print with a letter, a digit or a quote; operators are punctuation.
        other => !other.to_string().chars().all(|c| c.is_ascii_punctuation()),
    }
}

/// A numeric literal that is no `BIGINT` as an exact `DECIMAL`, as PostgreSQL's decimal
/// literals are `numeric`: `0.1 + 0.2` is `0.3`, and compared with a `BIGINT` it is compared
/// exactly (`id = 4611686018427387905.0` matched both 2^62 and 2^62 + 1 through float64, and
/// `9223372036854775808` read as NULL). `None`: the literal stays as it is, an integer that
/// fits `BIGINT`, or a value that needs more than DECIMAL's 38 digits (a DOUBLE then).
fn exact_literal(text: &str) -> Option<Expr> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let integer_text = fraction.is_empty() && exponent == 0;
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if integer_text && text.parse::<i64>().is_ok() {
        return None;
    }
    // The value is `digits` × 10^-scale.
    let scale = i64::try_from(fraction.len()).ok()?.checked_sub(exponent)?;
    let whole_digits = i64::try_from(digits.len()).ok()?.checked_sub(scale)?;
    let precision = whole_digits.max(0).checked_add(scale.max(0))?.max(1);
    if precision > 38 {
        return None;
    }
    let plain = if scale <= 0 {
        format!("{digits}{}", "0".repeat(usize::try_from(-scale).ok()?))
    } else {
        let scale = usize::try_from(scale).ok()?;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        format!("{whole}.{fraction}")
    };
    Some(Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(Expr::Value(
            Value::SingleQuotedString(plain).with_empty_span(),
        )),
        data_type: SqlDataType::Decimal(ExactNumberInfo::PrecisionAndScale(
            u64::try_from(precision).ok()?,
            scale.max(0),
        )),
        array: false,
        format: None,
    })
}

/// PostgreSQL's precedence of the arithmetic operators (higher binds tighter); `None` for
/// the others. The generic dialect parses `^` as XOR, looser than `+`.
fn arithmetic_level(op: &BinaryOperator) -> Option<u8> {
    match op {
        BinaryOperator::BitwiseXor | BinaryOperator::PGExp => Some(3),
        BinaryOperator::Multiply | BinaryOperator::Divide | BinaryOperator::Modulo => Some(2),
        BinaryOperator::Plus | BinaryOperator::Minus => Some(1),
        _ => None,
    }
}

/// Whether the arithmetic written without parentheses around `expr` has a `^`.
fn has_caret(expr: &Expr) -> bool {
    match expr {
        Expr::BinaryOp { left, op, right } if arithmetic_level(op).is_some() => {
            arithmetic_level(op) == Some(3) || has_caret(left) || has_caret(right)
        }
        _ => false,
    }
}

/// `expr`, arithmetic written without parentheses, parsed again with PostgreSQL's
/// precedence: `2 + 3 ^ 2` is `2 + (3 ^ 2)`, `2 ^ 3 * 4` is `(2 ^ 3) * 4`, all operators
/// left-associative, `^` exponentiation. Parentheses the user wrote (`Expr::Nested`) are
/// kept: they are operands here. The operands and operators keep their written order (a
/// parse tree read in order gives back its text), so only the grouping changes.
fn with_postgres_precedence(expr: Expr) -> Expr {
    fn flatten(expr: Expr, operands: &mut Vec<Expr>, operators: &mut Vec<BinaryOperator>) {
        match expr {
            Expr::BinaryOp { left, op, right } if arithmetic_level(&op).is_some() => {
                flatten(*left, operands, operators);
                operators.push(op);
                flatten(*right, operands, operators);
            }
            operand => operands.push(operand),
        }
    }
    fn reduce(out: &mut Vec<Expr>, op: BinaryOperator) {
        let (Some(right), Some(left)) = (out.pop(), out.pop()) else {
            return;
        };
        let op = match op {
            BinaryOperator::BitwiseXor => BinaryOperator::PGExp,
            other => other,
        };
        out.push(Expr::BinaryOp {
            left: Box::new(left),
            op,
            right: Box::new(right),
        });
    }
    let (mut operands, mut operators) = (Vec::new(), Vec::new());
    flatten(expr, &mut operands, &mut operators);
    let mut operands = operands.into_iter();
    let mut out: Vec<Expr> = operands.next().into_iter().collect();
    let mut pending: Vec<BinaryOperator> = Vec::new();
    for (op, operand) in operators.into_iter().zip(operands) {
        while let Some(top) = pending.last()
            && arithmetic_level(top) >= arithmetic_level(&op)
        {
            let top = pending.pop().unwrap_or(BinaryOperator::Plus);
            reduce(&mut out, top);
        }
        pending.push(op);
        out.push(operand);
    }
    while let Some(op) = pending.pop() {
        reduce(&mut out, op);
    }
    out.pop().unwrap_or_else(|| Expr::value(Value::Null))
}

/// The two arguments of a call `mod(a, b)`.
fn mod_call(expr: &Expr) -> Option<(Expr, Expr)> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let [name] = function.name.0.as_slice() else {
        return None;
    };
    if !name.as_ident()?.value.eq_ignore_ascii_case("mod") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    match list.args.as_slice() {
        [
            FunctionArg::Unnamed(FunctionArgExpr::Expr(a)),
            FunctionArg::Unnamed(FunctionArgExpr::Expr(b)),
        ] if list.duplicate_treatment.is_none() && list.clauses.is_empty() => {
            Some((a.clone(), b.clone()))
        }
        _ => None,
    }
}

/// A comparison of two rows, `(a1, a2) < (b1, b2)`, as PostgreSQL decides it: by the first
/// pair that is not equal, NULL when that pair is NULL: `a1 < b1 OR (a1 = b1 AND a2 < b2)`.
/// DataFusion compares the rows as structs, where NULL orders first, so `(NULL, 1) < (0, 2)`
/// was true and a DELETE with it removed rows PostgreSQL keeps.
fn row_comparison(expr: &Expr) -> Option<Expr> {
    let Expr::BinaryOp { left, op, right } = expr else {
        return None;
    };
    let (Expr::Tuple(left), Expr::Tuple(right)) = (left.as_ref(), right.as_ref()) else {
        return None;
    };
    if left.len() != right.len() || left.is_empty() {
        return None;
    }
    let strict = match op {
        BinaryOperator::Lt | BinaryOperator::LtEq => BinaryOperator::Lt,
        BinaryOperator::Gt | BinaryOperator::GtEq => BinaryOperator::Gt,
        BinaryOperator::Eq | BinaryOperator::NotEq => op.clone(),
        _ => return None,
    };
    let compare = |a: &Expr, op: BinaryOperator, b: &Expr| {
        Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(a.clone()),
            op,
            right: Box::new(b.clone()),
        }))
    };
    let join = |l: Expr, op: BinaryOperator, r: Expr| {
        Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(l),
            op,
            right: Box::new(r),
        }))
    };
    let pairs: Vec<(&Expr, &Expr)> = left.iter().zip(right.iter()).collect();
    let (last_a, last_b) = pairs[pairs.len() - 1];
    let mut out = compare(last_a, op.clone(), last_b);
    for &(a, b) in pairs[..pairs.len() - 1].iter().rev() {
        out = match op {
            BinaryOperator::Eq => join(compare(a, BinaryOperator::Eq, b), BinaryOperator::And, out),
            BinaryOperator::NotEq => join(
                compare(a, BinaryOperator::NotEq, b),
                BinaryOperator::Or,
                out,
            ),
            _ => join(
                compare(a, strict.clone(), b),
                BinaryOperator::Or,
                join(compare(a, BinaryOperator::Eq, b), BinaryOperator::And, out),
            ),
        };
    }
    Some(out)
}

/// The regular expression of a `SIMILAR TO` pattern, as PostgreSQL translates it: anchored
/// at both ends, `%` any text, `_` any character, `.` `^` `$` literal, `escape` (default
/// `\`) makes the next character literal. DataFusion took the pattern as an unanchored
/// regular expression.
fn similar_to_regex(pattern: &str, escape: Option<char>) -> String {
    let mut out = String::from("^(?:");
    let mut after_escape = false;
    let mut in_class = false;
    for c in pattern.chars() {
        if after_escape {
            after_escape = false;
            if c.is_ascii_punctuation() {
                out.push('\\');
            }
            out.push(c);
        } else if Some(c) == escape {
            after_escape = true;
        } else if in_class {
            if c == '\\' {
                out.push('\\');
            }
            out.push(c);
            in_class = c != ']';
        } else {
            match c {
                '[' => {
                    in_class = true;
                    out.push(c);
                }
                '%' => out.push_str(".*"),
                '_' => out.push('.'),
                '(' => out.push_str("(?:"),
                '.' | '^' | '$' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }
    out.push_str(")$");
    out
}

/// `x SIMILAR TO 'pattern'` as `x ~ 'regex'` ([`similar_to_regex`]); `None` when the
/// pattern or escape is not a literal (refused by [`check`]).
fn similar_to(expr: &Expr) -> Option<Expr> {
    let Expr::SimilarTo {
        negated,
        expr: operand,
        pattern,
        escape_char,
    } = expr
    else {
        return None;
    };
    let Expr::Value(pattern) = pattern.as_ref() else {
        return None;
    };
    let Value::SingleQuotedString(pattern) = &pattern.value else {
        return None;
    };
    let escape = match escape_char.as_ref().map(|v| &v.value) {
        None => Some('\\'),
        Some(Value::SingleQuotedString(e)) if e.is_empty() => None,
        Some(Value::SingleQuotedString(e)) if e.chars().count() == 1 => e.chars().next(),
        Some(_) => return None,
    };
    let regex = similar_to_regex(pattern, escape);
    Some(Expr::Nested(Box::new(Expr::BinaryOp {
        left: operand.clone(),
        op: if *negated {
            BinaryOperator::PGRegexNotMatch
        } else {
            BinaryOperator::PGRegexMatch
        },
        right: Box::new(Expr::value(Value::SingleQuotedString(regex))),
    })))
}

/// `CAST(x AS VARCHAR(n))` (or `CHAR(n)`) as PostgreSQL's explicit cast, which cuts the
/// text to `n` characters: `CAST(left(CAST(x AS TEXT), n) AS VARCHAR)`. DataFusion ignores
/// the length. `CHAR(n)` is not blank-padded (docs/sql.md).
fn cast_to_length(expr: &Expr) -> Option<Expr> {
    let Expr::Cast {
        kind,
        expr: operand,
        data_type,
        array: false,
        format: None,
    } = expr
    else {
        return None;
    };
    let (length, unbounded) = match data_type {
        SqlDataType::Varchar(length) | SqlDataType::CharacterVarying(length) => {
            (length.as_ref(), SqlDataType::Varchar(None))
        }
        SqlDataType::Char(length) | SqlDataType::Character(length) => {
            (length.as_ref(), SqlDataType::Char(None))
        }
        _ => return None,
    };
    let length = match length {
        Some(CharacterLength::IntegerLength { length, .. }) => *length,
        Some(CharacterLength::Max) => return None,
        None if matches!(unbounded, SqlDataType::Char(_)) => 1,
        None => return None,
    };
    let argument = |expr: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(expr));
    let text = Expr::Cast {
        kind: CastKind::Cast,
        expr: operand.clone(),
        data_type: SqlDataType::Text,
        array: false,
        format: None,
    };
    let cut = Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("left")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![
                argument(text),
                argument(Expr::value(Value::Number(length.to_string(), false))),
            ],
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    });
    Some(Expr::Cast {
        kind: kind.clone(),
        expr: Box::new(cut),
        data_type: unbounded,
        array: false,
        format: None,
    })
}

/// `FROM generate_series(1, 3) g` names its one column `g`, as PostgreSQL names the column
/// of a function returning a scalar after the alias (DataFusion calls it `value`).
struct ScalarFunctionAliases;

impl datafusion::sql::sqlparser::ast::VisitorMut for ScalarFunctionAliases {
    type Break = ();

    fn pre_visit_table_factor(
        &mut self,
        factor: &mut datafusion::sql::sqlparser::ast::TableFactor,
    ) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::TableAliasColumnDef;
        if let TableFactor::Table {
            name,
            args: Some(_),
            alias: Some(alias),
            ..
        } = factor
            && alias.columns.is_empty()
            && let [part] = name.0.as_slice()
            && part.as_ident().is_some_and(|f| {
                ["generate_series", "range"]
                    .iter()
                    .any(|n| f.value.eq_ignore_ascii_case(n))
            })
        {
            alias.columns = vec![TableAliasColumnDef {
                name: alias.name.clone(),
                data_type: None,
            }];
        }
        ControlFlow::Continue(())
    }

    /// `SELECT generate_series(1, 3)` returns three rows, as in PostgreSQL: DataFusion's
    /// scalar `generate_series` returns one list (`[1, 2, 3]`), so an item of a select list
    /// that is such a call is unnested (and keeps the name `generate_series`).
    fn pre_visit_select(
        &mut self,
        select: &mut datafusion::sql::sqlparser::ast::Select,
    ) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::SelectItem;
        for item in &mut select.projection {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(expr) => (expr, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
                _ => continue,
            };
            let Expr::Function(function) = &*expr else {
                continue;
            };
            let Some(name) = set_returning(function) else {
                continue;
            };
            let call = std::mem::replace(expr, Expr::value(Value::Null));
            let unnested = Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new("unnest")]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(call))],
                    clauses: Vec::new(),
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: Vec::new(),
            });
            *item = SelectItem::ExprWithAlias {
                expr: unnested,
                alias: alias.unwrap_or_else(|| Ident::new(name)),
            };
        }
        ControlFlow::Continue(())
    }
}

/// The name of a set-returning function PostgreSQL has and DataFusion plans as a scalar
/// function returning a list, if `function` calls one.
fn set_returning(function: &Function) -> Option<&'static str> {
    let [part] = function.name.0.as_slice() else {
        return None;
    };
    let name = part.as_ident()?;
    if function.over.is_some() || !matches!(function.args, FunctionArguments::List(_)) {
        return None;
    }
    ["generate_series"]
        .into_iter()
        .find(|n| name.value.eq_ignore_ascii_case(n))
}

/// Names every unnamed item of a select list whose text repeats (`SELECT id + 1, 0, 0`):
/// DataFusion refuses a projection with two columns of one name, where PostgreSQL takes
/// `INSERT ... SELECT` of them (its columns are matched by position).
fn distinct_names(items: &mut [datafusion::sql::sqlparser::ast::SelectItem]) {
    use datafusion::sql::sqlparser::ast::SelectItem;
    let mut seen = std::collections::HashSet::new();
    let repeats = items.iter().any(|item| match item {
        SelectItem::UnnamedExpr(expr) => !seen.insert(expr.to_string()),
        _ => false,
    });
    if !repeats {
        return;
    }
    for (i, item) in items.iter_mut().enumerate() {
        if let SelectItem::UnnamedExpr(expr) = item {
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::new(format!("omendb_column_{}", i + 1)),
            };
        }
    }
}

/// Gives operators PostgreSQL's meaning where the generic dialect parses them otherwise:
/// `a ^ b` is exponentiation (`power`), not bitwise XOR, and binds tighter than `*` and `+`
/// ([`with_postgres_precedence`]); `mod(a, b)` is `a % b`; numeric literals that a DOUBLE
/// would round are exact decimals ([`exact_literal`]); a cast to `VARCHAR(n)` cuts to `n`
/// characters ([`cast_to_length`]); rows compare pair by pair ([`row_comparison`]);
/// `SIMILAR TO` is an anchored regular expression ([`similar_to`]). Runs after [`check`], so the
/// statement's nesting is bounded.
fn postgres_operators(statement: &mut DfStatement) {
    let rewrite = |expr: &mut Expr| {
        if let Expr::BinaryOp { op, .. } = expr
            && arithmetic_level(op).is_some()
            && has_caret(expr)
        {
            let taken = std::mem::replace(expr, Expr::value(Value::Null));
            *expr = with_postgres_precedence(taken);
        }
        if let Some((a, b)) = mod_call(expr) {
            // PostgreSQL's `mod(a, b)` is `a % b`.
            *expr = Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(a),
                op: BinaryOperator::Modulo,
                right: Box::new(b),
            }));
        }
        if let Some(cut) = cast_to_length(expr) {
            *expr = cut;
        }
        if let Some(expanded) = row_comparison(expr) {
            *expr = expanded;
        }
        if let Some(regex) = similar_to(expr) {
            *expr = regex;
        }
        if let Expr::Value(value) = expr
            && let Value::Number(text, _) = &value.value
            && let Some(exact) = exact_literal(text)
        {
            *expr = exact;
        }
        ControlFlow::<()>::Continue(())
    };
    // PostgreSQL folds every minus of an integer constant into it, also through
    // parentheses: `-2147483648` is an INTEGER, `-(-2147483648)` the BIGINT 2147483648,
    // `-9223372036854775808` a BIGINT (without its sign it does not fit). A pass of its
    // own: the literal must still be a number when its minus is seen.
    let fold_sign = |expr: &mut Expr| {
        if let Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: operand,
        } = expr
        {
            let mut inner = operand.as_ref();
            while let Expr::Nested(nested) = inner {
                inner = nested;
            }
            if let Expr::Value(value) = inner
                && let Value::Number(text, long) = &value.value
            {
                let negated = match text.strip_prefix('-') {
                    Some(positive) => positive.to_string(),
                    None => format!("-{text}"),
                };
                if negated.parse::<i64>().is_ok() {
                    *expr = Expr::value(Value::Number(negated, *long));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    };
    match statement {
        DfStatement::Statement(statement) => {
            if let datafusion::sql::sqlparser::ast::Statement::Insert(insert) = statement.as_mut()
                && let Some(source) = insert.source.as_mut()
                && let SetExpr::Select(select) = source.body.as_mut()
            {
                distinct_names(&mut select.projection);
            }
            let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(
                statement.as_mut(),
                &mut ScalarFunctionAliases,
            );
            let _ = visit_expressions_mut(statement.as_mut(), fold_sign);
            let _ = visit_expressions_mut(statement.as_mut(), rewrite);
        }
        DfStatement::Explain(explain) => postgres_operators(&mut explain.statement),
        _ => {}
    }
}

/// Checks one parsed statement against `limits`.
pub fn check(statement: &DfStatement, limits: &SqlLimits) -> Result<()> {
    let mut checker = Checker {
        limit: limits.max_expression_depth,
        query_limit: limits.max_subquery_depth,
        array_depth: 0,
        depth: 0,
        query_depths: Vec::new(),
        relations: 0,
        windows: Default::default(),
        failure: None,
    };
    match statement {
        DfStatement::Statement(s) => {
            if let datafusion::sql::sqlparser::ast::Statement::Update(update) = s.as_ref() {
                let mut seen = std::collections::HashSet::new();
                for assignment in &update.assignments {
                    let target = assignment.target.to_string().to_lowercase();
                    if !seen.insert(target.clone()) {
                        return Err(Error::Sql(datafusion::error::DataFusionError::SQL(
                            Box::new(
                                datafusion::sql::sqlparser::parser::ParserError::ParserError(
                                    format!("multiple assignments to same column \"{target}\""),
                                ),
                            ),
                            None,
                        )));
                    }
                }
            }
            let _ = s.visit(&mut checker);
            if checker.failure.is_none() {
                crate::subquery_positions::check(s)?;
            }
        }
        DfStatement::Explain(explain) => return check(&explain.statement, limits),
        _ => {}
    }
    match checker.failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

struct Checker {
    limit: usize,
    query_limit: usize,
    /// `ARRAY[...]` constructors being visited, one inside another.
    array_depth: usize,
    /// Current nesting: expressions entered plus the set-operation depth of each query.
    depth: usize,
    /// What each query being visited added to `depth`.
    query_depths: Vec<usize>,
    /// Tables, derived tables and table functions seen so far.
    relations: usize,
    /// The different windows (`OVER ...`) seen so far.
    windows: std::collections::HashSet<String>,
    failure: Option<Error>,
}

/// The tables, derived tables and table functions one item of a `FROM` list joins.
fn from_items(item: &TableWithJoins) -> usize {
    let factor = |factor: &TableFactor| match factor {
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => from_items(table_with_joins),
        _ => 1,
    };
    factor(&item.relation)
        + item
            .joins
            .iter()
            .map(|join| factor(&join.relation))
            .sum::<usize>()
}

impl Checker {
    /// Refuses `found` items of a list that allows `limit`.
    fn count(&mut self, kind: LimitKind, found: usize, limit: usize) -> ControlFlow<()> {
        if found > limit {
            self.failure = Some(Error::Limit { kind, found, limit });
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Refuses `WITH` queries that build on each other too deep or expand too far (see
    /// [`MAX_CTE_DEPTH`]): each counts one plus the queries it names before it.
    fn check_with(&mut self, with: &With) -> ControlFlow<()> {
        let mut named: std::collections::HashMap<String, (usize, u64)> = Default::default();
        for cte in &with.cte_tables {
            let (mut depth, mut expansion) = (1usize, 1u64);
            let _ = visit_relations(cte.query.as_ref(), |name: &ObjectName| {
                if let Some((d, e)) = named.get(&name.to_string().to_lowercase()) {
                    depth = depth.max(d + 1);
                    expansion = expansion.saturating_add(*e);
                }
                ControlFlow::<()>::Continue(())
            });
            if depth > MAX_CTE_DEPTH || expansion > MAX_CTE_EXPANSION {
                let found = if depth > MAX_CTE_DEPTH {
                    depth
                } else {
                    usize::try_from(expansion).unwrap_or(usize::MAX)
                };
                self.failure = Some(Error::Limit {
                    kind: LimitKind::CteDepth,
                    found,
                    limit: MAX_CTE_DEPTH,
                });
                return ControlFlow::Break(());
            }
            named.insert(
                cte.alias.name.to_string().to_lowercase(),
                (depth, expansion),
            );
        }
        ControlFlow::Continue(())
    }

    fn enter(&mut self, levels: usize) -> ControlFlow<()> {
        self.depth += levels;
        if self.depth > self.limit {
            self.failure = Some(Error::Limit {
                kind: LimitKind::ExpressionDepth,
                found: self.depth,
                limit: self.limit,
            });
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

impl Visitor for Checker {
    type Break = ();

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        let items = select.from.iter().map(from_items).sum();
        self.count(LimitKind::Relations, items, MAX_FROM_ITEMS)
    }

    fn pre_visit_table_factor(&mut self, _factor: &TableFactor) -> ControlFlow<()> {
        self.relations += 1;
        self.count(LimitKind::Relations, self.relations, MAX_RELATIONS)
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(order_by) = &query.order_by
            && let OrderByKind::Expressions(keys) = &order_by.kind
        {
            self.count(LimitKind::SortKeys, keys.len(), MAX_SORT_KEYS)?;
        }
        let mut selects = vec![query.body.as_ref()];
        while let Some(body) = selects.pop() {
            match body {
                SetExpr::Select(select) => {
                    let items = select.projection.len();
                    self.count(LimitKind::TargetList, items, MAX_TARGET_LIST)?;
                    if let GroupByExpr::Expressions(keys, _) = &select.group_by {
                        self.count(LimitKind::SortKeys, keys.len(), MAX_SORT_KEYS)?;
                    }
                    if let Some(Distinct::On(keys)) = &select.distinct {
                        self.count(LimitKind::SortKeys, keys.len(), MAX_SORT_KEYS)?;
                    }
                    if select.distinct.is_some() {
                        // DISTINCT groups by every item.
                        self.count(LimitKind::SortKeys, items, MAX_SORT_KEYS)?;
                    }
                }
                SetExpr::SetOperation {
                    left,
                    right,
                    set_quantifier,
                    op,
                } => {
                    if matches!(op, SetOperator::Except | SetOperator::Intersect)
                        && matches!(set_quantifier, SetQuantifier::All)
                    {
                        // DataFusion's EXCEPT ALL removes every copy, and INTERSECT ALL
                        // keeps the left side's count: wrong answers, so refused.
                        self.failure = Some(Error::Unsupported(format!(
                            "{op} ALL; use {op} (without ALL) or a join"
                        )));
                        return ControlFlow::Break(());
                    }
                    if !matches!(
                        set_quantifier,
                        SetQuantifier::All | SetQuantifier::AllByName
                    ) && let SetExpr::Select(select) = left.as_ref()
                    {
                        // UNION, EXCEPT and INTERSECT (not ALL) group by every column.
                        let items = select.projection.len();
                        self.count(LimitKind::SortKeys, items, MAX_SORT_KEYS)?;
                    }
                    selects.push(left);
                    selects.push(right);
                }
                _ => {}
            }
        }
        if let Some(with) = &query.with {
            self.check_with(with)?;
        }
        let levels = 1 + set_depth(&query.body, self.limit);
        self.query_depths.push(levels);
        if self.query_depths.len() > self.query_limit {
            self.failure = Some(Error::Limit {
                kind: LimitKind::SubqueryDepth,
                found: self.query_depths.len(),
                limit: self.query_limit,
            });
            return ControlFlow::Break(());
        }
        self.enter(levels)
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth -= self.query_depths.pop().unwrap_or(0);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Value(value) = expr
            && let Value::Number(text, _) = &value.value
            && !text.parse::<f64>().is_ok_and(f64::is_finite)
        {
            self.failure = Some(Error::OutOfRange(format!(
                "the numeric literal {text} is out of range of DOUBLE (about 1.8e308)"
            )));
            return ControlFlow::Break(());
        }
        if let Expr::Value(value) = expr
            && let Value::Placeholder(name) = &value.value
            && let Some(number) = name.strip_prefix('$')
            && number.bytes().all(|b| b.is_ascii_digit())
        {
            // Checked before anything sizes a list by the highest placeholder.
            let found = number.parse::<usize>().unwrap_or(usize::MAX);
            if found > MAX_PLACEHOLDER {
                self.failure = Some(Error::Limit {
                    kind: LimitKind::Placeholder,
                    found,
                    limit: MAX_PLACEHOLDER,
                });
                return ControlFlow::Break(());
            }
        }
        match expr {
            Expr::BinaryOp { left, right, .. }
                if matches!(left.as_ref(), Expr::Tuple(_))
                    && matches!(right.as_ref(), Expr::Tuple(_)) =>
            {
                // Expanded pair by pair (`row_comparison`), two levels a pair.
                if let Expr::Tuple(items) = left.as_ref() {
                    self.count(LimitKind::ExpressionDepth, 2 * items.len(), self.limit)?;
                }
            }
            Expr::SimilarTo { .. } if similar_to(expr).is_none() => {
                self.failure = Some(Error::Unsupported(
                    "SIMILAR TO with a pattern or escape that is not a literal; use ~ with a \
                     regular expression"
                        .into(),
                ));
                return ControlFlow::Break(());
            }
            Expr::InList { list, .. } => self.count(LimitKind::InList, list.len(), MAX_IN_LIST)?,
            Expr::Case { conditions, .. } => {
                self.count(LimitKind::CaseBranches, conditions.len(), MAX_CASE_BRANCHES)?;
            }
            Expr::Function(function) => {
                if let FunctionArguments::List(list) = &function.args {
                    let found = list.args.len();
                    self.count(LimitKind::FunctionArguments, found, MAX_FUNCTION_ARGUMENTS)?;
                }
                if let Some(WindowType::WindowSpec(window)) = &function.over {
                    let keys = window.partition_by.len().max(window.order_by.len());
                    self.count(LimitKind::SortKeys, keys, MAX_SORT_KEYS)?;
                }
                if let Some(over) = &function.over {
                    self.windows.insert(over.to_string());
                    self.count(LimitKind::Windows, self.windows.len(), MAX_WINDOWS)?;
                }
            }
            _ => {}
        }
        if let Expr::Array(_) = expr {
            // PostgreSQL's arrays have at most 6 dimensions; deeper constructors took the
            // planner time cubic in their nesting.
            self.array_depth += 1;
            if self.array_depth > MAX_ARRAY_DIMENSIONS {
                self.failure = Some(Error::Limit {
                    kind: LimitKind::ArrayDimensions,
                    found: self.array_depth,
                    limit: MAX_ARRAY_DIMENSIONS,
                });
                return ControlFlow::Break(());
            }
        }
        self.enter(1)
    }

    fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Array(_) = expr {
            self.array_depth -= 1;
        }
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// The nesting of set operations (`UNION`, `EXCEPT`, ...) in a query body, counted without
/// recursion and only up to just past `limit`.
fn set_depth(body: &SetExpr, limit: usize) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(body, 0usize)];
    while let Some((expr, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if deepest > limit {
            break;
        }
        if let SetExpr::SetOperation { left, right, .. } = expr {
            pending.push((left, depth + 1));
            pending.push((right, depth + 1));
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_is_rollback() {
        let limits = SqlLimits::default();
        let statements = parse_sql(
            "ABORT; abort work; Abort Transaction and no chain;",
            &limits,
        )
        .expect("parse");
        assert_eq!(statements.len(), 3);
        for statement in statements {
            assert_eq!(statement.to_string(), "ROLLBACK");
        }
        assert!(parse_sql("ABORT TO s", &limits).is_err());
        // A column named abort is still a column.
        assert!(parse_sql("SELECT abort FROM t", &limits).is_ok());
    }

    fn chain(term: &str, separator: &str, n: usize) -> String {
        vec![term; n].join(separator)
    }

    fn depth_error(sql: &str, limits: &SqlLimits) -> bool {
        matches!(
            parse_sql(sql, limits),
            Err(Error::Limit {
                kind: LimitKind::ExpressionDepth,
                ..
            })
        )
    }

    #[test]
    fn deep_chains_are_refused_and_shallow_ones_pass() {
        let limits = SqlLimits {
            max_expression_depth: 100,
            ..SqlLimits::default()
        };
        for (term, separator) in [("1", "+"), ("a = 1", " OR "), ("'x'", " || ")] {
            let deep = format!("SELECT {} FROM t", chain(term, separator, 200));
            assert!(depth_error(&deep, &limits), "{term}{separator}: {deep:.40}");
            let shallow = format!("SELECT {} FROM t", chain(term, separator, 20));
            assert!(parse_sql(&shallow, &limits).is_ok(), "{shallow}");
        }
        let unions = chain("SELECT 1", " UNION ALL ", 200);
        assert!(depth_error(&unions, &limits));
        assert!(parse_sql(&chain("SELECT 1", " UNION ALL ", 20), &limits).is_ok());
        // Subqueries add up with the expressions around them.
        let nested = format!("SELECT {}1{}", "(SELECT ".repeat(60), ")".repeat(60));
        assert!(parse_sql(&nested, &limits).is_err());
    }

    #[test]
    fn a_huge_chain_is_refused_without_overflowing_a_small_stack() {
        // A 2 MB chain parsed on a 256 KiB thread: parsing and dropping the tree run on a
        // grown stack, the check stops at the limit.
        let sql = format!("SELECT {}", chain("1", "+", 1_000_000));
        let refused = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || depth_error(&sql, &SqlLimits::default()))
            .expect("spawn")
            .join()
            .expect("no stack overflow");
        assert!(refused);
    }

    #[test]
    fn long_statements_and_infinite_literals_are_refused() {
        let limits = SqlLimits {
            max_statement_bytes: 100,
            ..SqlLimits::default()
        };
        let long = format!("SELECT '{}'", "x".repeat(200));
        assert!(matches!(
            parse_sql(&long, &limits),
            Err(Error::Limit {
                kind: LimitKind::StatementBytes,
                found: 209,
                limit: 100
            })
        ));
        assert!(matches!(
            parse_sql("SELECT 1e400", &limits),
            Err(Error::OutOfRange(_))
        ));
        assert!(parse_sql("SELECT 1e300, 9223372036854775807", &limits).is_ok());
    }

    #[test]
    fn decimal_literals_are_exact_decimals() {
        let exact = |text: &str| exact_literal(text).map(|e| e.to_string());
        assert_eq!(
            exact("4611686018427387905.0").as_deref(),
            Some("CAST('4611686018427387905.0' AS DECIMAL(20,1))")
        );
        assert_eq!(
            exact("9223372036854775808").as_deref(),
            Some("CAST('9223372036854775808' AS DECIMAL(19,0))")
        );
        assert_eq!(
            exact("1.2345678901234567e3").as_deref(),
            Some("CAST('1234.5678901234567' AS DECIMAL(17,13))")
        );
        assert_eq!(
            exact("12345678901234567e5").as_deref(),
            Some("CAST('1234567890123456700000' AS DECIMAL(22,0))")
        );
        assert_eq!(
            exact("0.0000000000000000012345678901234567").as_deref(),
            Some("CAST('0.0000000000000000012345678901234567' AS DECIMAL(34,34))")
        );
        assert_eq!(exact("1.5").as_deref(), Some("CAST('1.5' AS DECIMAL(2,1))"));
        assert_eq!(exact("0.1").as_deref(), Some("CAST('0.1' AS DECIMAL(1,1))"));
        assert_eq!(
            exact("1e3").as_deref(),
            Some("CAST('1000' AS DECIMAL(4,0))")
        );
        // Integers that fit BIGINT stay integers; what needs more than 38 digits, DOUBLE.
        for kept in ["1", "9223372036854775807", "1e300", "1e99999999999"] {
            assert_eq!(exact(kept), None, "{kept}");
        }
        // Beyond DECIMAL's 38 digits: left to DOUBLE.
        assert_eq!(exact(&"9".repeat(40)), None);
    }

    #[test]
    fn caret_is_exponentiation_as_in_postgresql() {
        let parsed =
            parse_sql("SELECT 2 ^ 3, (SELECT 4 ^ 0.5)", &SqlLimits::default()).expect("valid SQL");
        let tree = format!("{:?}", parsed[0]);
        assert_eq!(tree.matches("PGExp").count(), 2, "{tree}");
        assert!(!tree.contains("BitwiseXor"), "{tree}");
    }

    #[test]
    fn caret_binds_tighter_than_products_and_sums() {
        fn grouped(expr: &Expr) -> String {
            match expr {
                Expr::BinaryOp { left, op, right } => {
                    format!("[{} {op} {}]", grouped(left), grouped(right))
                }
                other => other.to_string(),
            }
        }
        let cases = [
            ("2 + 3 ^ 2", "[2 + [3 ^ 2]]"),
            ("2 ^ 3 * 4", "[[2 ^ 3] * 4]"),
            ("1 + 2 * 3 ^ 2 - 1", "[[1 + [2 * [3 ^ 2]]] - 1]"),
            ("2 ^ 3 ^ 2", "[[2 ^ 3] ^ 2]"),
            ("(2 + 3) ^ 2", "[(2 + 3) ^ 2]"),
            ("1 - 2 - 3", "[[1 - 2] - 3]"),
            ("2 ^ 3 = 8", "[[2 ^ 3] = 8]"),
        ];
        for (text, expected) in cases {
            let mut parsed =
                parse_sql(&format!("SELECT {text}"), &SqlLimits::default()).expect("valid SQL");
            let DfStatement::Statement(statement) = parsed.pop_front().expect("one") else {
                panic!("a statement")
            };
            let sql = statement.to_string();
            let datafusion::sql::sqlparser::ast::Statement::Query(query) = *statement else {
                panic!("a query: {sql}")
            };
            let SetExpr::Select(select) = *query.body else {
                panic!("a select")
            };
            use datafusion::sql::sqlparser::ast::SelectItem;
            let Some(SelectItem::ExprWithAlias { expr, .. } | SelectItem::UnnamedExpr(expr)) =
                select.projection.first()
            else {
                panic!("one item")
            };
            assert_eq!(grouped(expr), expected, "{text}");
        }
    }

    #[test]
    fn with_queries_building_on_each_other_are_bounded() {
        let limits = SqlLimits::default();
        let chain = |n: usize, body: &dyn Fn(usize) -> String| {
            let ctes: Vec<String> = (1..=n).map(|i| format!("c{i} AS ({})", body(i))).collect();
            format!(
                "WITH c0 AS (SELECT 1 AS x), {} SELECT * FROM c{n}",
                ctes.join(", ")
            )
        };
        let straight = |i: usize| format!("SELECT * FROM c{}", i - 1);
        let cte_error = |sql: &str| {
            matches!(
                parse_sql(sql, &limits),
                Err(Error::Limit {
                    kind: LimitKind::CteDepth,
                    ..
                })
            )
        };
        assert!(cte_error(&chain(MAX_CTE_DEPTH, &straight)));
        assert!(parse_sql(&chain(MAX_CTE_DEPTH - 1, &straight), &limits).is_ok());
        // Two references to the one before at each step: 2^20 queries once planned.
        let doubling = |i: usize| format!("SELECT a.x FROM c{0} a, c{0} b", i - 1);
        assert!(cte_error(&chain(20, &doubling)));
        assert!(parse_sql(&chain(10, &doubling), &limits).is_ok());
        // Many side by side, each naming the first, are fine.
        let side = |_: usize| "SELECT * FROM c0".to_string();
        assert!(parse_sql(&chain(1000, &side), &limits).is_ok());
    }
}
