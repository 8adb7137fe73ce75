//! PSA users: the tokens file, one `NAME TOKEN` per line (`#` comments and blank lines are
//! skipped). Each name is a user of its own; a request is seen only by the user who made it.

use std::path::Path;

/// Shortest token accepted (as for the `/v1` token).
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Clone, Default)]
pub struct Tokens {
    users: Vec<(String, String)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|(n, _)| n.as_str()).collect();
        write!(f, "Tokens({names:?})")
    }
}

impl Tokens {
    /// Reads and checks `path`. `admin`: the `/v1` token, which must not double as a PSA one.
    pub fn load(path: &Path, admin: Option<&str>) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("psa.tokens_file {}: cannot read: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    file = %path.display(),
                    "the PSA tokens file is readable by other users: chmod 600 it"
                );
            }
        }
        Tokens::parse(&text, admin).map_err(|e| format!("psa.tokens_file {}: {e}", path.display()))
    }

    pub fn parse(text: &str, admin: Option<&str>) -> Result<Tokens, String> {
        let mut users: Vec<(String, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(name), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("line {n}: expected \"NAME TOKEN\""));
            };
            if name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
            {
                return Err(format!(
                    "line {n}: user name '{name}' must be 1 to 64 of A-Z a-z 0-9 - _ . @"
                ));
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "line {n}: the token of '{name}' is shorter than {MIN_TOKEN_LEN} characters"
                ));
            }
            if users.iter().any(|(u, _)| u == name) {
                return Err(format!("line {n}: user '{name}' is named twice"));
            }
            if users.iter().any(|(_, t)| t == token) {
                return Err(format!(
                    "line {n}: the token of '{name}' is another user's too"
                ));
            }
            if admin == Some(token) {
                return Err(format!(
                    "line {n}: the token of '{name}' is the /v1 admin token; give PSA users \
                     tokens of their own"
                ));
            }
            users.push((name.to_string(), token.to_string()));
        }
        if users.is_empty() {
            return Err("no users (one \"NAME TOKEN\" per line)".into());
        }
        Ok(Tokens { users })
    }

    /// The user whose token `given` is. Every token is compared in full, so the time taken
    /// says nothing about which one, or how much of one, matched.
    pub fn user(&self, given: &str) -> Option<&str> {
        let mut found = None;
        for (name, token) in &self.users {
            if same(given.as_bytes(), token.as_bytes()) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Constant-time equality of two secrets (the length is not secret).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_token_and_bad_files_name_the_line() {
        let t = Tokens::parse(
            "# users\nencoder-1 aaaaaaaaaaaaaaaaaaaa\n\nkubo  bbbbbbbbbbbbbbbbbbbb\n",
            None,
        )
        .expect("parse");
        assert_eq!(t.user("aaaaaaaaaaaaaaaaaaaa"), Some("encoder-1"));
        assert_eq!(t.user("bbbbbbbbbbbbbbbbbbbb"), Some("kubo"));
        assert_eq!(t.user("bbbbbbbbbbbbbbbbbbb"), None);
        assert_eq!(t.user(""), None);
        let err = |text: &str, admin: Option<&str>| Tokens::parse(text, admin).unwrap_err();
        assert!(err("a aaaaaaaaaaaaaaaaaaaa extra\n", None).starts_with("line 1:"));
        assert!(err("a short\n", None).contains("shorter than 16"));
        assert!(
            err("a aaaaaaaaaaaaaaaaaaaa\na bbbbbbbbbbbbbbbbbbbb", None).contains("named twice")
        );
        assert!(
            err("a aaaaaaaaaaaaaaaaaaaa\nb aaaaaaaaaaaaaaaaaaaa", None).contains("another user")
        );
        assert!(
            err("a aaaaaaaaaaaaaaaaaaaa", Some("aaaaaaaaaaaaaaaaaaaa")).contains("/v1 admin token")
        );
        assert!(err("# nobody\n", None).contains("no users"));
        assert!(err("a/b aaaaaaaaaaaaaaaaaaaa", None).contains("user name"));
    }
}
