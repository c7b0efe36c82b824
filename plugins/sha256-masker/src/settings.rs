//! The masker's settings, parsed from the operator's `--policy-config key=value` pairs.

use crate::masq::policy::types::Config;

/// (name, description, default) of every setting, as `describe` reports them.
pub const DESCRIPTIONS: &[(&str, &str, &str)] = &[
    (
        "mask",
        "Comma-separated source:target pairs. Each source field is replaced by a token from \
         the host's pseudonym import, written to target; the source field is not written.",
        "ip:masked_ip,device_id:masked_device_id",
    ),
    (
        "required",
        "Comma-separated fields every record must have; a record without one is rejected.",
        "user_id,app_version,device_type,ip,locale,device_id",
    ),
    (
        "nullable",
        "Comma-separated required fields that may be null; null is written as SQL NULL.",
        "locale",
    ),
    (
        "version-field",
        "Field holding a MAJOR.MINOR[.PATCH] string, rewritten as the integer \
         MAJOR*1000000 + MINOR*1000 + PATCH. Empty to turn off.",
        "app_version",
    ),
    (
        "date-field",
        "Field set to the UTC date (YYYY-MM-DD) the message was sent. Empty to turn off.",
        "create_date",
    ),
];

/// Validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mask: Vec<(String, String)>,
    pub required: Vec<String>,
    pub nullable: Vec<String>,
    pub version_field: Option<String>,
    pub date_field: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::parse(&Vec::new()).expect("the defaults are valid")
    }
}

impl Settings {
    /// Parses the operator's pairs over the defaults; an error names the key at fault.
    pub fn parse(config: &Config) -> Result<Settings, String> {
        let value_of = |key: &str| -> String {
            config
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    DESCRIPTIONS
                        .iter()
                        .find(|(name, _, _)| *name == key)
                        .map(|(_, _, default)| (*default).to_string())
                        .expect("every key read has a default")
                })
        };
        for (key, _) in config {
            if !DESCRIPTIONS.iter().any(|(name, _, _)| name == key) {
                let known: Vec<&str> = DESCRIPTIONS.iter().map(|(n, _, _)| *n).collect();
                // The crate's own name: seal-masker shares this file.
                return Err(format!(
                    "unknown setting '{key}': {} takes {}",
                    crate::POLICY_NAME,
                    known.join(", ")
                ));
            }
        }
        let mut mask = Vec::new();
        for pair in list(&value_of("mask")) {
            let (source, target) = pair.split_once(':').ok_or_else(|| {
                format!("setting 'mask': '{pair}' is not source:target, e.g. ip:masked_ip")
            })?;
            let (source, target) = (source.trim(), target.trim());
            if source.is_empty() || target.is_empty() {
                return Err(format!("setting 'mask': '{pair}' has an empty field name"));
            }
            if source == target {
                return Err(format!(
                    "setting 'mask': '{pair}' writes the token under the raw field's own name; \
                     pick a target such as masked_{source}"
                ));
            }
            mask.push((source.to_string(), target.to_string()));
        }
        let required = list(&value_of("required"));
        let nullable = list(&value_of("nullable"));
        if let Some(stray) = nullable.iter().find(|n| !required.contains(n)) {
            return Err(format!(
                "setting 'nullable': '{stray}' is not in 'required'; only required fields need a null rule"
            ));
        }
        let optional = |s: String| {
            if s.trim().is_empty() {
                None
            } else {
                Some(s.trim().to_string())
            }
        };
        Ok(Settings {
            mask,
            required,
            nullable,
            version_field: optional(value_of("version-field")),
            date_field: optional(value_of("date-field")),
        })
    }

    /// The input fields this configuration masks: the ones that hold PII.
    pub fn pii(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (source, _) in &self.mask {
            if !out.contains(source) {
                out.push(source.clone());
            }
        }
        out
    }

    /// The fields this configuration can write.
    pub fn writes(&self) -> Vec<String> {
        let masked: Vec<&String> = self.mask.iter().map(|(s, _)| s).collect();
        let mut out: Vec<String> = self
            .required
            .iter()
            .filter(|f| !masked.contains(f))
            .cloned()
            .collect();
        out.extend(self.mask.iter().map(|(_, t)| t.clone()));
        out.extend(self.date_field.clone());
        out
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Config {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_fit_the_login_table() {
        let s = Settings::default();
        assert_eq!(
            s.writes(),
            [
                "user_id",
                "app_version",
                "device_type",
                "locale",
                "masked_ip",
                "masked_device_id",
                "create_date"
            ]
        );
    }

    #[test]
    fn operator_settings_override_defaults() {
        let s = Settings::parse(&pairs(&[
            ("mask", "email:masked_email"),
            ("date-field", ""),
        ]))
        .unwrap();
        assert_eq!(
            s.mask,
            vec![("email".to_string(), "masked_email".to_string())]
        );
        assert_eq!(s.date_field, None);
    }

    #[test]
    fn bad_settings_name_the_key() {
        assert!(
            Settings::parse(&pairs(&[("mask", "ip")]))
                .unwrap_err()
                .contains("'mask'")
        );
        assert!(
            Settings::parse(&pairs(&[("mask", "ip:ip")]))
                .unwrap_err()
                .contains("raw field")
        );
        assert!(
            Settings::parse(&pairs(&[("colour", "red")]))
                .unwrap_err()
                .contains("'colour'")
        );
        assert!(
            Settings::parse(&pairs(&[("nullable", "zip")]))
                .unwrap_err()
                .contains("'zip'")
        );
    }
}
