#![forbid(unsafe_code)]
//! `liter-llm-proxy.toml`: the types, `${VAR}` interpolation, validation and the
//! redacted rendering printed by `liter-llm config check`.
//!
//! Every struct denies unknown fields so a typo is an error naming the file, line
//! and field, instead of a setting that silently does nothing.

mod interpolate;
mod secret;
mod types;

pub use interpolate::{interpolate, InterpolationError};
pub use secret::Secret;
pub use types::*;

use std::path::{Path, PathBuf};

/// The file name discovered when `--config` is not given.
pub const CONFIG_FILE_NAME: &str = "liter-llm-proxy.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {error}")]
    Interpolation {
        source_name: String,
        error: InterpolationError,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Parse a config file's text. `env` looks up variables for `${VAR}`.
    ///
    /// The text is parsed twice: once as written, so structural errors (unknown
    /// fields, wrong types) carry the line and column of the offending field, and
    /// once after interpolation, which works on parsed string values only, never on
    /// raw text, so comments are untouched and quotes inside values survive.
    pub fn from_toml_str(
        text: &str,
        source_name: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string().trim_end().to_string(),
        };
        toml::from_str::<Config>(text).map_err(parse_err)?;
        let mut table: toml::Table = toml::from_str(text).map_err(parse_err)?;
        interpolate(&mut table, env).map_err(|error| ConfigError::Interpolation {
            source_name: source_name.to_string(),
            error,
        })?;
        let config: Config = toml::Value::Table(table).try_into().map_err(parse_err)?;
        config.check_values()?;
        Ok(config)
    }

    pub fn from_file(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml_str(&text, &path.display().to_string(), env)
    }

    /// The effective config as TOML with every secret replaced by `[REDACTED]`.
    pub fn to_redacted_toml(&self) -> String {
        match toml::to_string_pretty(self) {
            Ok(s) => s,
            Err(e) => format!("# could not render config: {e}\n"),
        }
    }
}

/// Walk from `start` up to the filesystem root looking for `liter-llm-proxy.toml`.
pub fn discover(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(CONFIG_FILE_NAME))
        .find(|candidate| candidate.is_file())
}

/// How the proxy looks up environment variables (for `${VAR}` and providers' key
/// variables). Shared so tests can run with an environment of their own.
pub type EnvLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Reads the process environment; the indirection lets tests supply their own.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
