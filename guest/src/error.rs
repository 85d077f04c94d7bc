//! The one error type of the guest; every failure is a value with a message, never a panic.

use std::fmt;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The model file is not a GPT-2 GGUF this crate can run.
    InvalidModel(String),
    /// A request argument is out of range.
    InvalidRequest(String),
    /// Prompt plus output would run past the context length.
    ContextOverflow(String),
    /// The model file could not be read.
    Io(String),
}

/// Result with the guest's error.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An `InvalidModel` error from anything printable.
    pub fn model(message: impl Into<String>) -> Self {
        Error::InvalidModel(message.into())
    }

    /// An `InvalidRequest` error from anything printable.
    pub fn request(message: impl Into<String>) -> Self {
        Error::InvalidRequest(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidModel(m) => write!(f, "invalid model: {m}"),
            Error::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            Error::ContextOverflow(m) => write!(f, "context overflow: {m}"),
            Error::Io(m) => write!(f, "cannot read model: {m}"),
        }
    }
}

impl std::error::Error for Error {}
