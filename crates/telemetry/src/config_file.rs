//! Reading a server's TOML config file, the same way for every part.

use std::path::Path;

/// Why a config file could not be read (its values are checked later, by
/// each part, with errors naming the field).
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// Reads and parses `path`; unknown fields are refused by the type's own
/// `deny_unknown_fields`.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|err| ConfigFileError::Parse {
        path: path.display().to_string(),
        message: err.to_string(),
    })
}
