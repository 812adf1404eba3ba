//! Redaction of secrets before configuration is shown (`/config`, `--print-config`, logs).
//!
//! Two rules: a value whose key names a secret (password, secret, token, …) is replaced
//! whole; a URL with a password in its user-info (`rtsp://user:pw@cam/…`,
//! `postgres://user:pw@db/…`) keeps everything but the password.

use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Key fragments that mark a value as secret (compared lowercase).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "private_key",
    "key.pem",
];

/// Whether a configuration key names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| k.contains(s)) && !k.ends_with("_env") && !k.ends_with("_file")
}

/// Replaces the password of a URL's user-info, if it has one. Strings that are not
/// URLs come back unchanged.
pub fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return s.to_owned();
    };
    let (userinfo, host) = authority.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{REDACTED}{host}{tail}"),
        None => s.to_owned(),
    }
}

/// Redacts a JSON document in place.
pub fn redact_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_key(k) && !val.is_null() {
                    *val = Value::String(REDACTED.to_owned());
                } else {
                    redact_json(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::String(s) if s.contains("://") => *s = redact_url(s),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_keep_all_but_the_password() {
        assert_eq!(
            redact_url("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101?x=1"),
            "rtsp://admin:[redacted]@10.0.0.5:554/Streaming/101?x=1"
        );
        assert_eq!(
            redact_url("postgres://fw:p%40ss@db:5432/framewire"),
            "postgres://fw:[redacted]@db:5432/framewire"
        );
        assert_eq!(redact_url("rtsp://cam/stream"), "rtsp://cam/stream");
        assert_eq!(redact_url("rtsp://user@cam/s"), "rtsp://user@cam/s");
        assert_eq!(redact_url("rtsp://cam/a@b"), "rtsp://cam/a@b");
    }

    #[test]
    fn secret_keys_and_nested_urls() {
        let mut v = json!({
            "kafka": {"options": {"sasl.password": "s3cret", "sasl.username": "fw"}},
            "admin": {"token": "abc"},
            "cameras": [{"url": "rtsp://u:pw@cam/x", "credentials": {"password_env": "CAM_PW"}}],
            "empty_token": null
        });
        redact_json(&mut v);
        let text = v.to_string();
        for secret in ["s3cret", "abc", ":pw@"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert_eq!(v["kafka"]["options"]["sasl.username"], "fw");
        assert_eq!(v["cameras"][0]["credentials"]["password_env"], "CAM_PW");
        assert!(v["empty_token"].is_null());
    }
}
