//! `TIM_GATEWAY__<SECTION>__<KEY>` overrides: where they come from ([`EnvSource`]), and how each
//! is typed like its key's built-in default and laid over the file before validation.

use std::collections::HashMap;

use super::{one_line, ConfigError, RawConfig};

/// Prefix of every env override; the rest is `<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "TIM_GATEWAY__";
/// The env var that normally carries `upstream.secret_key` (from a k8s Secret).
pub const ENV_SECRET_KEY: &str = "TIM_GATEWAY__UPSTREAM__SECRET_KEY";

/// Where env overrides come from: the process ([`ProcessEnv`]) or, in tests, a `HashMap`.
pub trait EnvSource {
    /// The value of one variable, if set and valid unicode.
    fn var(&self, name: &str) -> Option<String>;
    /// All variables that are valid unicode.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

/// `raw` (the file `text` as read) with every `TIM_GATEWAY__*` variable of `env` laid over it.
/// Two variables differing only in case are an error; `parse_error` reports `text` not parsing.
pub(super) fn overrides(
    mut raw: RawConfig,
    text: &str,
    env: &dyn EnvSource,
    parse_error: impl Fn(toml::de::Error) -> ConfigError,
) -> Result<RawConfig, ConfigError> {
    let mut vars: Vec<_> = env
        .vars()
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort_by_key(|(name, _)| name.to_ascii_uppercase());
    if let Some(pair) = vars
        .windows(2)
        .find(|w| w[0].0.eq_ignore_ascii_case(&w[1].0))
    {
        return Err(env_error(
            &pair[1].0,
            format!("conflicts with {}", pair[0].0),
        ));
    }
    if !vars.is_empty() {
        let mut table: toml::Table = text.parse().map_err(parse_error)?;
        for (var, value) in vars {
            raw = apply_env(&mut table, &var, &value)?;
        }
    }
    Ok(raw)
}

/// Sets `var` (`TIM_GATEWAY__<SECTION>__<KEY>`, naming an existing key) in the file's `table`,
/// typed like that key's built-in default, and re-reads the table so that a bad value is blamed
/// on its own variable.
fn apply_env(table: &mut toml::Table, var: &str, text: &str) -> Result<RawConfig, ConfigError> {
    let defaults = toml::Table::try_from(RawConfig::default()).expect("defaults serialize to TOML");
    let name = var[ENV_PREFIX.len()..].to_lowercase();
    let Some((section, key)) = name.split_once("__").filter(|(_, k)| !k.contains("__")) else {
        return Err(env_error(
            var,
            "must look like TIM_GATEWAY__<SECTION>__<KEY>",
        ));
    };
    let Some(keys) = defaults.get(section).and_then(toml::Value::as_table) else {
        return Err(env_error(
            var,
            format!("unknown section `{section}` (known: {})", names(&defaults)),
        ));
    };
    let Some(default) = keys.get(key) else {
        return Err(env_error(
            var,
            format!("unknown key `{section}.{key}` (known: {})", names(keys)),
        ));
    };
    let value = typed_value(default, text).map_err(|reason| env_error(var, reason))?;
    let section = table
        .entry(section)
        .or_insert_with(|| toml::Table::new().into());
    if let Some(section) = section.as_table_mut() {
        section.insert(key.to_owned(), value);
    }
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e| env_error(var, one_line(&e)))
}

/// Types an env string like the key's default: integers and booleans are parsed, arrays are
/// comma-separated strings (empty = empty list), strings are taken as is.
fn typed_value(default: &toml::Value, text: &str) -> Result<toml::Value, String> {
    use toml::Value;
    let list = |text: &str| {
        text.split(',')
            .map(|s| Value::String(s.trim().to_owned()))
            .collect()
    };
    match default {
        Value::String(_) => Ok(Value::String(text.to_owned())),
        Value::Integer(_) => text
            .trim()
            .parse()
            .map(Value::Integer)
            .map_err(|e| format!("expected an integer, got {text:?} ({e})")),
        Value::Boolean(_) => text
            .trim()
            .parse()
            .map(Value::Boolean)
            .map_err(|_| format!("expected true or false, got {text:?}")),
        Value::Array(_) if text.trim().is_empty() => Ok(Value::Array(Vec::new())),
        Value::Array(_) => Ok(Value::Array(list(text))),
        other => Err(format!(
            "{} settings cannot be set from the environment",
            other.type_str()
        )),
    }
}

fn names(table: &toml::Table) -> String {
    table
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn env_error(var: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Env {
        var: var.to_owned(),
        reason: reason.into(),
    }
}

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }

    fn vars(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
