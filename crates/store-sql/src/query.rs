//! Statements built with sea-query: the bridge from a typed statement (tables and columns as
//! `Iden` enums in [`crate::schema`], so a misspelt name does not compile) to a [`Sql`] the
//! dialect runs. Values go in as [`v`] (an [`Arg`] as a sea-query value) and come back out as
//! `Arg`s, so ids, instants and JSON are bound the dialect's way whichever builder wrote the text.

use redeploy_core::store::{Cursor, Page, StoreError, StoreResult};
use sea_query::{
    Iden, InsertStatement, Query, QueryStatementWriter, SelectStatement, SimpleExpr, Value,
};

use crate::dialect::{Arg, Dialect, SqlRow};
use crate::sql::RowExt;
use crate::sql::Sql;

/// `arg` as a sea-query expression (a bound value).
pub(crate) fn v(arg: impl Into<Arg>) -> SimpleExpr {
    SimpleExpr::Value(value_of(arg.into()))
}

/// A value of the schema's own fixed vocabulary (an action kind or state, a status code) written
/// into the statement's text, not bound. PostgreSQL plans each statement once for every set of
/// arguments (`plan_cache_mode = force_generic_plan`): a bound `state = $1` is planned as if it
/// matched a typical state's share of the rows, so with 100,000 pending resets a test for
/// `failed` scanned the whole table, and a bound kind list cannot match a partial index's
/// predicate. Written out, the planner uses the value's own statistics (issue #16). Never for
/// anything a caller supplies.
pub(crate) fn lit(value: impl Into<Arg>) -> SimpleExpr {
    SimpleExpr::Constant(value_of(value.into()))
}

fn value_of(arg: Arg) -> Value {
    match arg {
        Arg::Text(v) => Value::String(v.map(Box::new)),
        Arg::Int(v) => Value::BigInt(v),
        Arg::Bool(v) => Value::Bool(v),
        Arg::Bytes(v) => Value::Bytes(Some(Box::new(v))),
        Arg::Id(v) => Value::Uuid(v.map(Box::new)),
        Arg::Time(v) => Value::TimeDateTimeWithTimeZone(v.map(Box::new)),
        // Text that is not JSON stays text, which a JSON column refuses loudly.
        Arg::Json(v) => match v {
            None => Value::Json(None),
            Some(text) => match serde_json::from_str(&text) {
                Ok(json) => Value::Json(Some(Box::new(json))),
                Err(_) => Value::String(Some(Box::new(text))),
            },
        },
    }
}

fn arg_of(value: Value) -> StoreResult<Arg> {
    let int = |v: Option<i128>| {
        v.map(|v| {
            i64::try_from(v).map_err(|_| StoreError::Backend(format!("integer {v} too large")))
        })
        .transpose()
        .map(Arg::Int)
    };
    Ok(match value {
        Value::Bool(v) => Arg::Bool(v),
        Value::TinyInt(v) => int(v.map(i128::from))?,
        Value::SmallInt(v) => int(v.map(i128::from))?,
        Value::Int(v) => int(v.map(i128::from))?,
        Value::BigInt(v) => Arg::Int(v),
        Value::TinyUnsigned(v) => int(v.map(i128::from))?,
        Value::SmallUnsigned(v) => int(v.map(i128::from))?,
        Value::Unsigned(v) => int(v.map(i128::from))?,
        Value::BigUnsigned(v) => int(v.map(i128::from))?,
        Value::String(v) => Arg::Text(v.map(|s| *s)),
        Value::Bytes(Some(b)) => Arg::Bytes(*b),
        Value::Uuid(v) => Arg::Id(v.map(|u| *u)),
        Value::TimeDateTimeWithTimeZone(v) => Arg::Time(v.map(|t| *t)),
        Value::Json(v) => Arg::Json(v.map(|j| j.to_string())),
        other => {
            return Err(StoreError::Backend(format!(
                "no database type for the value {other:?}"
            )))
        }
    })
}

/// `statement` written in `D`'s SQL, with its values as arguments.
pub(crate) fn built<D: Dialect>(statement: &impl QueryStatementWriter) -> StoreResult<Sql> {
    let (text, args) = written::<D>(statement)?;
    Ok(Sql::new(text, args))
}

/// `select` written in `D`'s SQL with the dialect's lock clause `lock` (such as
/// [`Dialect::TAKE_LOCK`]) appended: the one place a clause goes in as text after sea-query
/// wrote the rest, for the locks whose clause the dialect owns. A lock is the last clause of a
/// SELECT, so `select` must carry none of its own (`lock` starts with its space, or is empty).
pub(crate) fn built_locked<D: Dialect>(select: &SelectStatement, lock: &str) -> StoreResult<Sql> {
    let (text, args) = written::<D>(select)?;
    Ok(Sql::new(text + lock, args))
}

/// `statement` written in `D`'s SQL, and its values as arguments.
pub(crate) fn written<D: Dialect>(
    statement: &impl QueryStatementWriter,
) -> StoreResult<(String, Vec<Arg>)> {
    let (text, values) = statement.build_any(D::QUERY_BUILDER);
    let args = values
        .into_iter()
        .map(arg_of)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok((text, args))
}

/// Statement texts written once per shape: a statement run on every check-in is written by
/// sea-query the first time and then reused with its arguments, which the caller lists in the
/// order the text takes them (writing it each time was about a tenth of the server's CPU per
/// check-in: docs/benchmarks.md, session 12). Debug builds (the tests) write the statement on
/// every use and check that text and arguments are the ones given.
#[derive(Debug, Default)]
pub(crate) struct Shapes(std::sync::RwLock<std::collections::HashMap<(&'static str, u64), String>>);

impl Shapes {
    /// The statement of shape `key` (a name and what varies in its text) with `args`; `write`
    /// writes it (and its arguments, which must equal `args`) when the shape is new.
    pub(crate) fn sql(
        &self,
        key: (&'static str, u64),
        args: Vec<Arg>,
        write: impl FnOnce() -> StoreResult<(String, Vec<Arg>)>,
    ) -> StoreResult<Sql> {
        let known = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(text) = known {
            if cfg!(debug_assertions) {
                let (written, written_args) = write()?;
                assert_eq!(written, text, "statement {key:?} changed shape");
                assert_eq!(written_args, args, "arguments of statement {key:?}");
            }
            return Ok(Sql::new(text, args));
        }
        let (text, written_args) = write()?;
        if written_args != args {
            return Err(StoreError::Backend(format!(
                "the arguments of statement {key:?} are not in the order it takes them: \
                 {written_args:?}, given {args:?}"
            )));
        }
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, text.clone());
        Ok(Sql::new(text, args))
    }

    /// [`Self::sql`] for a statement written by hand beside its arguments (no builder to
    /// check the order against): `write` gives the text when the shape is new.
    pub(crate) fn text(
        &self,
        key: (&'static str, u64),
        args: Vec<Arg>,
        write: impl FnOnce() -> String,
    ) -> Sql {
        let known = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let text = known.unwrap_or_else(|| {
            let text = write();
            self.0
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, text.clone());
            text
        });
        Sql::new(text, args)
    }
}

/// An INSERT of one row into `table`: `values` in the order of `columns`.
pub(crate) fn insert_row<C: Iden + 'static>(
    table: C,
    columns: impl IntoIterator<Item = C>,
    values: impl IntoIterator<Item = SimpleExpr>,
) -> StoreResult<InsertStatement> {
    Ok(Query::insert()
        .into_table(table)
        .columns(columns)
        .values(values)
        .map_err(|e| StoreError::Backend(e.to_string()))?
        .to_owned())
}

/// The page in `rows`, read with `read`: rows of a query ordered by `seq` that asked for one
/// more than `limit` (whether it came tells whether a next page exists), each with its `seq`.
pub(crate) fn page_by_seq<R: SqlRow, T>(
    rows: &[R],
    limit: u32,
    tag: char,
    read: impl Fn(&R) -> StoreResult<T>,
) -> StoreResult<Page<T>> {
    let mut items = Vec::with_capacity(rows.len());
    let mut last_seq = None;
    for r in rows.iter().take(limit as usize) {
        items.push(read(r)?);
        last_seq = Some(r.i64("seq")?);
    }
    let next = match (rows.len() > limit as usize, last_seq) {
        (true, Some(seq)) => Some(Cursor::at_position(tag, seq)),
        _ => None,
    };
    Ok(Page { items, next })
}
