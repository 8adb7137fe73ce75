//! The queue's states, and their one mapping to the `state` column.

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Queued,
    Pinning,
    Pinned,
    Failed,
    LocalFallback,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Queued,
        State::Pinning,
        State::Pinned,
        State::Failed,
        State::LocalFallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Pinning => "pinning",
            State::Pinned => "pinned",
            State::Failed => "failed",
            State::LocalFallback => "local-fallback",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Every state's name, for messages: "queued, pinning, ...".
    pub fn names() -> String {
        State::ALL.map(State::as_str).join(", ")
    }

    /// A state no worker will change any more.
    pub fn is_final(self) -> bool {
        matches!(self, State::Pinned | State::Failed | State::LocalFallback)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one mapping between states and the `state` column: every query binds a `State`, so no
/// state name is written in SQL.
impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for State {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        State::parse(value.as_str()?).ok_or_else(|| FromSqlError::Other(Box::new(UnknownState)))
    }
}

/// A `state` column holding no state's name.
#[derive(Debug)]
struct UnknownState;

impl std::fmt::Display for UnknownState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a queue state ({})", State::names())
    }
}

impl std::error::Error for UnknownState {}
