//! `${VAR}` and `${VAR:-default}` in string values, applied after parsing.

/// An interpolation failure, naming the config field it happened in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InterpolationError {
    #[error("environment variable `{var}` is not set (used by `{field}`); set it, or write `${{{var}:-default}}`")]
    Unset { var: String, field: String },
    #[error("unterminated `${{` in `{field}`")]
    Unterminated { field: String },
    #[error("invalid variable name `{name}` in `{field}`")]
    BadName { name: String, field: String },
}

/// Expand variables in every string value of `table`, recursively. Keys are not
/// expanded. `$${` writes a literal `${`.
pub fn interpolate(
    table: &mut toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), InterpolationError> {
    for (key, value) in table.iter_mut() {
        walk(value, key.clone(), env)?;
    }
    Ok(())
}

fn walk(
    value: &mut toml::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), InterpolationError> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            *s = expand(s, &path, env)?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                walk(v, format!("{path}.{k}"), env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(
    input: &str,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let end = body_start
            .find('}')
            .ok_or_else(|| InterpolationError::Unterminated {
                field: field.to_string(),
            })?;
        let inner = &body_start[..end];
        let (name, default) = match inner.find(":-") {
            Some(i) => (&inner[..i], Some(&inner[i + 2..])),
            None => (inner, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(InterpolationError::BadName {
                name: name.to_string(),
                field: field.to_string(),
            });
        }
        // `${VAR:-default}` also covers a variable set to the empty string, as in
        // the shell, so an empty export cannot blank out a credential.
        let value = match (env(name), default) {
            (Some(v), Some(d)) if v.is_empty() => d.to_string(),
            (Some(v), _) => v,
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                return Err(InterpolationError::Unset {
                    var: name.to_string(),
                    field: field.to_string(),
                })
            }
        };
        out.push_str(&value);
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-\"quoted\"".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_unset_default_and_escape() {
        assert_eq!(expand("a${KEY}b", "f", &env).unwrap(), "ask-\"quoted\"b");
        assert_eq!(expand("${NOPE:-x y}", "f", &env).unwrap(), "x y");
        assert_eq!(expand("${EMPTY:-d}", "f", &env).unwrap(), "d");
        assert_eq!(expand("$${KEY} $5", "f", &env).unwrap(), "${KEY} $5");
        assert_eq!(
            expand("${NOPE}", "general.master_key", &env).unwrap_err(),
            InterpolationError::Unset {
                var: "NOPE".into(),
                field: "general.master_key".into()
            }
        );
        assert!(matches!(
            expand("${KEY", "f", &env),
            Err(InterpolationError::Unterminated { .. })
        ));
        assert!(matches!(
            expand("${1X}", "f", &env),
            Err(InterpolationError::BadName { .. })
        ));
    }

    #[test]
    fn field_path_includes_array_index() {
        let mut t: toml::Table =
            toml::from_str("[[models]]\nname='a'\n[[models]]\napi_key='${NOPE}'").unwrap();
        let err = interpolate(&mut t, &env).unwrap_err();
        assert_eq!(
            err,
            InterpolationError::Unset {
                var: "NOPE".into(),
                field: "models[1].api_key".into()
            }
        );
    }
}
