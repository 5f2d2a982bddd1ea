//! The rclone.conf grammar exactly as rclone reads it (reference/rclone.md):
//! trimmed lines, `#`/`;` comment lines only, `[name]` sections (repeated ones
//! merged), keys before any section in `DEFAULT`, the first `=` or `:` splits key
//! from value, the last duplicate wins, values unwrapped only from backticks or
//! `"""…"""`, `%(name)s` interpolation and dotted-section fallback at lookup time.

use std::collections::BTreeMap;

use super::ConfigError;

/// The section that holds keys written before any `[section]` header.
pub const DEFAULT_SECTION: &str = "DEFAULT";

/// rclone limits `%(name)s` substitution rounds so self-references terminate.
const MAX_INTERPOLATION_ROUNDS: usize = 200;

/// A parsed (decrypted) rclone.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// Where the text came from, for error messages (a path, or "environment").
    pub origin: String,
    sections: BTreeMap<String, BTreeMap<String, String>>,
    /// Section names in order of first appearance (DEFAULT excluded), for messages.
    order: Vec<String>,
}

impl ConfigFile {
    /// An empty configuration: every remote must come from the environment.
    pub fn empty(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            ..Self::default()
        }
    }

    /// Parse plain-text rclone.conf content. A leading UTF-8 BOM is skipped.
    pub fn parse(text: &str, origin: impl Into<String>) -> Result<Self, ConfigError> {
        let mut file = Self::empty(origin);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut section = DEFAULT_SECTION.to_owned();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') && line.ends_with(']') && line.len() >= 2 {
                let name = line[1..line.len() - 1].trim();
                if name.is_empty() {
                    return Err(file.parse_error(line_no, "empty section name `[]`"));
                }
                section = name.to_owned();
                file.touch_section(&section);
                continue;
            }
            let Some(split) = line.find(['=', ':']) else {
                let message = if line.starts_with('[') {
                    format!("section header {line:?} must end with `]` (no comments after it)")
                } else {
                    format!("expected `key = value` or `[section]`, found {line:?}")
                };
                return Err(file.parse_error(line_no, &message));
            };
            if split == 0 {
                return Err(file.parse_error(line_no, "missing key before `=` or `:`"));
            }
            let key = line[..split].trim();
            let value = unwrap_value(line[split + 1..].trim())
                .map_err(|m| file.parse_error(line_no, &m))?;
            file.touch_section(&section);
            file.sections
                .get_mut(&section)
                .expect("section was just created")
                .insert(key.to_owned(), value.to_owned());
        }
        Ok(file)
    }

    fn touch_section(&mut self, name: &str) {
        if !self.sections.contains_key(name) {
            self.sections.insert(name.to_owned(), BTreeMap::new());
            if name != DEFAULT_SECTION {
                self.order.push(name.to_owned());
            }
        }
    }

    fn parse_error(&self, line: usize, message: &str) -> ConfigError {
        ConfigError::Parse {
            origin: self.origin.clone(),
            line,
            message: message.to_owned(),
        }
    }

    /// Whether `[name]` appears in the file.
    pub fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(name)
    }

    /// Section names in order of first appearance, without `DEFAULT`.
    pub fn section_names(&self) -> &[String] {
        &self.order
    }

    /// Keys written directly in `[section]` (not inherited from a dotted parent).
    pub fn keys(&self, section: &str) -> impl Iterator<Item = &str> {
        self.sections
            .get(section)
            .into_iter()
            .flat_map(|s| s.keys().map(String::as_str))
    }

    /// The value of `key` as rclone's GetValue computes it: from `[section]`, else
    /// from the parent of a dotted section (`[a.b]` → `[a]`), with `%(name)s`
    /// interpolated. An empty value counts as unset.
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        let raw = self.raw_get(section, key)?;
        let value = self.interpolate(section, raw);
        (!value.is_empty()).then_some(value)
    }

    fn raw_get(&self, section: &str, key: &str) -> Option<&str> {
        let entries = self.sections.get(section)?;
        match entries.get(key) {
            Some(v) => Some(v),
            None => {
                let parent = &section[..section.rfind('.')?];
                self.raw_get(parent, key)
            }
        }
    }

    /// `%(name)s` is looked up in DEFAULT first (itself interpolated), then in the
    /// same section; a missing name becomes empty. Every occurrence is replaced.
    /// `budget` bounds both the rounds and the nesting, so self-references end.
    fn interpolate(&self, section: &str, raw: &str) -> String {
        let mut budget = MAX_INTERPOLATION_ROUNDS;
        self.interpolate_with(section, raw, &mut budget)
    }

    fn interpolate_with(&self, section: &str, raw: &str, budget: &mut usize) -> String {
        let mut value = raw.to_owned();
        while *budget > 0 {
            *budget -= 1;
            let Some((pattern, name)) = find_reference(&value) else {
                break;
            };
            let replacement = match self.raw_get(DEFAULT_SECTION, &name) {
                Some(v) => self.interpolate_with(DEFAULT_SECTION, v, budget),
                None if section != DEFAULT_SECTION => self
                    .sections
                    .get(section)
                    .and_then(|s| s.get(&name))
                    .cloned()
                    .unwrap_or_default(),
                None => String::new(),
            };
            value = value.replace(&pattern, &replacement);
        }
        value
    }
}

/// The first `%(name)s` in `value`: the full pattern and the name inside it.
fn find_reference(value: &str) -> Option<(String, String)> {
    let mut from = 0;
    while let Some(start) = value[from..].find("%(").map(|i| i + from) {
        let rest = &value[start + 2..];
        if let Some(end) = rest.find(')')
            && end > 0
            && rest[end + 1..].starts_with('s')
        {
            let name = &rest[..end];
            return Some((format!("%({name})s"), name.to_owned()));
        }
        from = start + 2;
    }
    None
}

/// rclone (goconfig) unwraps a value that starts with a backtick (length ≥ 2) or
/// with `"""` (length ≥ 6) up to the LAST matching quote, dropping anything after
/// it; a missing closing quote is a parse error. Other quotes are kept literally.
fn unwrap_value(value: &str) -> Result<&str, String> {
    let quote = if value.len() >= 2 && value.starts_with('`') {
        "`"
    } else if value.len() >= 6 && value.starts_with("\"\"\"") {
        "\"\"\""
    } else {
        return Ok(value);
    };
    let rest = &value[quote.len()..];
    rest.rfind(quote)
        .map(|end| &rest[..end])
        .ok_or_else(|| format!("value {value:?} opens with {quote} but never closes it"))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
