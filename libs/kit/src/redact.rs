//! Redaction of secrets before configuration is shown (`/config`, `--print-config`, logs).
//!
//! Three rules: a value whose key names a secret (password, secret, token, passphrase, a
//! librdkafka `*.key` or `sasl.oauthbearer.config`, …) is replaced whole; a URL keeps
//! everything but the password of its user-info (`rtsp://user:pw@cam/…`,
//! `postgres://user:pw@db/…`) and the values of secret query parameters
//! (`postgres://db/fw?password=…`, `?sslpassword=…`, `?token=…`); a libpq keyword/value
//! string (`host=db password=… sslpassword='…'`) keeps everything but the secret values.

use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Key fragments that mark a value as secret (compared lowercase).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "private_key",
    "key.pem",
    "sasl.oauthbearer.config",
];

/// Whether a configuration key (or a URL query parameter, or a libpq keyword) names a
/// secret: it contains a secret fragment, or it is a key itself (`ssl.key`, `api_key`), and
/// it does not merely name where the secret is (`*_env`, `*_file`, `*.location`).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let names_secret = SECRET_KEYS.iter().any(|s| k.contains(s))
        || k == "key"
        || k.ends_with(".key")
        || k.ends_with("_key")
        || k.ends_with("-key");
    let names_place = k.ends_with("_env") || k.ends_with("_file") || k.ends_with(".location");
    names_secret && !names_place
}

/// Replaces the password of a URL's user-info and the values of its secret query
/// parameters. Strings that are not URLs come back unchanged.
pub fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:{REDACTED}{host}"),
                None => authority.to_owned(),
            }
        }
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

/// The path, query and fragment of a URL with the values of secret query parameters
/// replaced.
fn redact_query(tail: &str) -> String {
    let Some((path, rest)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _value)) if is_secret_key(&percent_decoded(name)) => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{path}?{}", query.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A query parameter name with `%XX` escapes and `+` decoded (for matching only).
fn percent_decoded(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces the secret values of a libpq keyword/value connection string
/// (`host=db user=fw password=s3cret`, values optionally in single quotes with `\'` and
/// `\\` escapes). Strings without a secret keyword come back unchanged.
pub fn redact_keyword_values(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let spaces = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..spaces]);
        rest = &rest[spaces..];
        if rest.is_empty() {
            break;
        }
        let Some(eq) = rest
            .find('=')
            .filter(|&eq| !rest[..eq].contains(char::is_whitespace))
        else {
            // Not keyword=value: copy the word as it is.
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        };
        let keyword = &rest[..eq];
        let after = &rest[eq + 1..];
        let value_len = if let Some(quoted) = after.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            1 + end
        } else {
            after.find(char::is_whitespace).unwrap_or(after.len())
        };
        out.push_str(keyword);
        out.push('=');
        if is_secret_key(keyword) {
            out.push_str(REDACTED);
        } else {
            out.push_str(&after[..value_len]);
        }
        rest = &after[value_len..];
    }
    out
}

/// Redacts a string that may hold a secret: a URL, or a keyword/value connection string.
pub fn redact_text(s: &str) -> String {
    if s.contains("://") {
        redact_url(s)
    } else if s.contains('=') {
        redact_keyword_values(s)
    } else {
        s.to_owned()
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
        Value::String(s) => *s = redact_text(s),
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
    fn secret_query_parameters_and_keyword_strings() {
        assert_eq!(
            redact_url("postgres://fw@db/framewire?sslmode=require&password=s3cret#x"),
            "postgres://fw@db/framewire?sslmode=require&password=[redacted]#x"
        );
        assert_eq!(
            redact_url("postgresql://db/fw?sslpassword=k3y&Pass%77ord=p&application_name=fw"),
            "postgresql://db/fw?sslpassword=[redacted]&Pass%77ord=[redacted]&application_name=fw"
        );
        assert_eq!(
            redact_url("http://u:pw@h/p?token=abc"),
            "http://u:[redacted]@h/p?token=[redacted]"
        );
        assert_eq!(
            redact_keyword_values("host=db user=fw password='a b\\'c' sslmode=require"),
            "host=db user=fw password=[redacted] sslmode=require"
        );
        assert_eq!(
            redact_keyword_values("dbname=fw  sslpassword=x"),
            "dbname=fw  sslpassword=[redacted]"
        );
        assert_eq!(
            redact_text("a plain sentence = fine"),
            "a plain sentence = fine"
        );
        for key in [
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "ssl_key",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "private.key.passphrase",
            "api-key",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "ssl.key.location",
            "ssl.keystore.location",
            "password_env",
            "password_file",
            "sasl.username",
            "sasl.mechanism",
            "keyframes",
            "key_prefix_len",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    proptest::proptest! {
        /// A secret put in any place a connection string can carry one never comes out.
        #[test]
        fn a_planted_secret_never_survives(secret in "[A-Za-z0-9!$()*,;~._-]{6,24}") {
            let placements = [
                format!("postgres://fw:{secret}@db:5432/framewire"),
                format!("postgres://fw@db/framewire?password={secret}&sslmode=require"),
                format!("postgres://db/framewire?sslmode=require&sslpassword={secret}"),
                format!("rtsp://admin:{secret}@10.0.0.5/Streaming/101"),
                format!("host=db user=fw password={secret} dbname=framewire"),
                format!("host=db password='{secret} x' dbname=framewire"),
            ];
            for text in placements {
                let out = redact_text(&text);
                proptest::prop_assert!(!out.contains(&secret), "{secret} survived in {out}");
                let mut v = serde_json::json!({"database_url": text, "nested": [text]});
                redact_json(&mut v);
                proptest::prop_assert!(!v.to_string().contains(&secret));
            }
        }
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
