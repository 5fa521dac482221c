//! The parsers' error type. Orchestration code uses `anyhow` (this is a
//! binary); what a parser rejects is a typed, matchable kind.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ParseError {
    #[error("{tool} printed no JSON object")]
    NoJson { tool: &'static str },
    #[error("{tool} output is not valid JSON")]
    Json {
        tool: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{tool} output lacks {what}")]
    Missing {
        tool: &'static str,
        what: &'static str,
    },
    #[error("fio reported error {code} for job {job}")]
    FioJobError { job: String, code: i64 },
}
