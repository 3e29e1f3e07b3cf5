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
    parse_toml(&text).map_err(|message| ConfigFileError::Parse {
        path: path.display().to_string(),
        message,
    })
}

/// Parses TOML text; an error starts with the field it is about
/// (`balance.policy: unknown variant ...`), so a choice that is an enum
/// names its field when refused, as values checked later do.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().trim_end();
        let at = inner
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                format!(" (line {line})")
            })
            .unwrap_or_default();
        if field == "." {
            format!("{message}{at}")
        } else {
            format!("{field}: {message}{at}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_toml;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        section: Section,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        choice: Choice,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Choice {
        One,
        Two,
    }

    #[test]
    fn errors_name_the_field_they_are_about() {
        let err = parse_toml::<File>("[section]\nchoice = \"three\"\n").unwrap_err();
        assert!(
            err.starts_with("section.choice: unknown variant `three`"),
            "{err}"
        );
        assert!(err.ends_with("(line 2)"), "{err}");
        let err = parse_toml::<File>("[section]\nchoise = \"one\"\n").unwrap_err();
        assert!(err.contains("choise"), "{err}");
        assert!(parse_toml::<File>("[section]\nchoice = \"two\"\n").is_ok());
    }
}
