//! Reads a named profile from an AWS-style shared credentials file
//! (`[name]` sections with `aws_access_key_id`, `aws_secret_access_key`,
//! optional `aws_session_token`, `endpoint_url`). Pure parsing: the binary
//! decides which file to read.

use std::collections::BTreeMap;

use crate::target::s3::S3Credentials;

/// A profile's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub credentials: S3Credentials,
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("profile [{name}] not found in {file}")]
    NotFound { name: String, file: String },
    #[error("profile [{name}] in {file} lacks {field}")]
    MissingField {
        name: String,
        file: String,
        field: &'static str,
    },
}

/// Parses `text` (the contents of `file`) and returns profile `name`.
/// `[profile name]` headers (the AWS config-file spelling) are accepted too.
pub fn parse_profile(text: &str, file: &str, name: &str) -> Result<Profile, ProfileError> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let header = header.trim();
            let header = header.strip_prefix("profile ").unwrap_or(header).trim();
            current = Some(header.to_owned());
            sections.entry(header.to_owned()).or_default();
            continue;
        }
        if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            sections
                .entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let section = sections.get(name).ok_or_else(|| ProfileError::NotFound {
        name: name.to_owned(),
        file: file.to_owned(),
    })?;
    let field = |field: &'static str| {
        section
            .get(field)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| ProfileError::MissingField {
                name: name.to_owned(),
                file: file.to_owned(),
                field,
            })
    };
    Ok(Profile {
        credentials: S3Credentials {
            access_key_id: field("aws_access_key_id")?,
            secret_access_key: field("aws_secret_access_key")?,
            session_token: section.get("aws_session_token").cloned(),
        },
        endpoint_url: section.get("endpoint_url").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
# comment
[default]
aws_access_key_id = AKDEFAULT
aws_secret_access_key = sdefault

[profile r2]
aws_access_key_id=AKR2
aws_secret_access_key = s=r2
endpoint_url = https://acct.r2.cloudflarestorage.com

[broken]
aws_access_key_id = AK
";

    #[test]
    fn reads_named_profiles() {
        let r2 = parse_profile(FILE, "creds", "r2").unwrap();
        assert_eq!(r2.credentials.access_key_id, "AKR2");
        assert_eq!(r2.credentials.secret_access_key, "s=r2");
        assert_eq!(
            r2.endpoint_url.as_deref(),
            Some("https://acct.r2.cloudflarestorage.com")
        );
        assert_eq!(
            parse_profile(FILE, "creds", "default")
                .unwrap()
                .credentials
                .access_key_id,
            "AKDEFAULT"
        );
    }

    #[test]
    fn missing_profiles_and_fields_are_errors() {
        assert!(matches!(
            parse_profile(FILE, "creds", "nope"),
            Err(ProfileError::NotFound { .. })
        ));
        assert_eq!(
            parse_profile(FILE, "creds", "broken"),
            Err(ProfileError::MissingField {
                name: "broken".into(),
                file: "creds".into(),
                field: "aws_secret_access_key"
            })
        );
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let profile = parse_profile(FILE, "creds", "r2").unwrap();
        assert!(!format!("{profile:?}").contains("s=r2"));
    }
}
