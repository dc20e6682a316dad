//! Errors reported to the nginx configuration: one line, with the cause.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub fn new(message: String) -> Error {
        Error(message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// A wasmtime error and its causes on one line, for `nginx -t` output.
pub fn one_line(error: &wasmtime::Error) -> String {
    let chain = error
        .chain()
        .map(|cause| cause.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    chain.split_whitespace().collect::<Vec<_>>().join(" ")
}
