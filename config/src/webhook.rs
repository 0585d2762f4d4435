//! Webhooks: where Switchyard POSTs a JSON note of each deployment transition, and the plain
//! `http://` URLs webhooks and deployment gates are sent to.
//!
//! The same rules check `[[control.webhooks]]` in the file and `"webhooks"` in a deployment
//! request: an `http://host:port/path` URL, event patterns from [`WEBHOOK_EVENTS`] (`*` at the
//! end matches any suffix, `deployment.*` every event), and the name of the environment
//! variable holding the signing secret (the secret itself is never in a file or request).

use std::fmt;

use crate::raw;

/// Every event a webhook can ask for.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "deployment.started",
    "deployment.phase",
    "deployment.step",
    "deployment.paused",
    "deployment.resumed",
    "deployment.gate",
    "deployment.analysis",
    "deployment.succeeded",
    "deployment.rolled_back",
    "deployment.failed",
];

/// An `http://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    host: String,
    port: u16,
    path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path][?query]` (port 80 by default). `https://` is refused
    /// with a message saying so: webhook and gate requests are plain HTTP (send them to a
    /// relay on the same host for TLS).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid URL {s:?}: {why}");
        if s.starts_with("https://") {
            return Err(bad(
                "only http:// is supported (use a local relay for https)",
            ));
        }
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| bad("expected http://host:port/path"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'#')
        {
            return Err(bad("the path has a space, control character or fragment"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("invalid IPv6 address"))?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("invalid port"))?,
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'_'));
        if !host_ok {
            return Err(bad("expected a host name or IP address"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// Host name or IP literal (without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path and query, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// A validated webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    url: HttpUrl,
    events: Vec<String>,
    secret_env: Option<String>,
}

impl WebhookSpec {
    /// Where to POST.
    pub fn url(&self) -> &HttpUrl {
        &self.url
    }

    /// The event patterns (never empty: absent means `deployment.*`).
    pub fn events(&self) -> &[String] {
        &self.events
    }

    /// The environment variable holding the signing secret.
    pub fn secret_env(&self) -> Option<&str> {
        self.secret_env.as_deref()
    }

    /// Whether `event` (one of [`WEBHOOK_EVENTS`]) is asked for.
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|p| matches(p, event))
    }
}

fn matches(pattern: &str, event: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event.starts_with(prefix),
        None => pattern == event,
    }
}

/// Checks one webhook; each problem is `(field, message)` with the field relative to the
/// webhook (`url`, `events[1]`, `secret_env`).
pub fn webhook(raw: &raw::Webhook) -> Result<WebhookSpec, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let url = HttpUrl::parse(&raw.url).map_err(|e| problems.push(("url".to_owned(), e)));
    for (i, e) in raw.events.iter().enumerate() {
        if !WEBHOOK_EVENTS.iter().any(|known| matches(e, known)) {
            problems.push((
                format!("events[{i}]"),
                format!(
                    "unknown event {e:?}: expected \"deployment.*\" or one of {}",
                    WEBHOOK_EVENTS.join(", ")
                ),
            ));
        }
    }
    if let Some(name) = &raw.secret_env {
        let ok = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            problems.push((
                "secret_env".to_owned(),
                format!("invalid environment variable name {name:?}: expected letters, digits and _, such as \"HOOK_SECRET\""),
            ));
        }
    }
    match url {
        Ok(url) if problems.is_empty() => Ok(WebhookSpec {
            url,
            events: if raw.events.is_empty() {
                vec!["deployment.*".to_owned()]
            } else {
                raw.events.clone()
            },
            secret_env: raw.secret_env.clone(),
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_port_and_path() {
        let u = HttpUrl::parse("http://127.0.0.1:8088/hooks/deploy?x=1").expect("valid");
        assert_eq!(
            (u.host(), u.port(), u.path()),
            ("127.0.0.1", 8088, "/hooks/deploy?x=1")
        );
        let u = HttpUrl::parse("http://ci.internal").expect("valid");
        assert_eq!((u.port(), u.path()), (80, "/"));
        assert_eq!(u.to_string(), "http://ci.internal:80/");
        let u = HttpUrl::parse("http://[::1]:9/a").expect("valid");
        assert_eq!(u.authority(), "[::1]:9");
        for bad in [
            "https://x:1/",
            "ftp://x",
            "http://:80/",
            "http://x:0/",
            "http://x y/",
            "http://x/a b",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_patterns_match_by_prefix() {
        let raw = raw::Webhook {
            url: "http://127.0.0.1:1/".into(),
            events: vec!["deployment.rolled_back".into(), "deployment.gate*".into()],
            secret_env: Some("HOOK_SECRET".into()),
        };
        let w = webhook(&raw).expect("valid");
        assert!(w.wants("deployment.rolled_back"));
        assert!(w.wants("deployment.gate"));
        assert!(!w.wants("deployment.started"));
        let all = webhook(&raw::Webhook {
            events: Vec::new(),
            ..raw.clone()
        })
        .expect("valid");
        assert!(WEBHOOK_EVENTS.iter().all(|e| all.wants(e)));
    }

    #[test]
    fn every_problem_is_named() {
        let raw = raw::Webhook {
            url: "https://x/".into(),
            events: vec!["deploy.started".into()],
            secret_env: Some("1-BAD".into()),
        };
        let fields: Vec<String> = webhook(&raw)
            .expect_err("invalid")
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(fields, ["url", "events[0]", "secret_env"]);
    }

    #[test]
    fn file_errors_name_the_line_and_the_webhook_field() {
        let text = "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\n[control]\nlisten = \"127.0.0.1:0\"\n\n[[control.webhooks]]\nurl = \"http://127.0.0.1:8088/ok\"\n\n[[control.webhooks]]\nurl = \"https://hooks.example/x\"\nevents = [\"deployment.*\", \"deploy.done\"]\n";
        let e = crate::parse(text, std::path::Path::new("sy.toml"))
            .expect_err("invalid")
            .to_string();
        assert!(
            e.contains("sy.toml:12:7: control.webhooks[1].url: invalid URL"),
            "{e}"
        );
        assert!(
            e.contains("control.webhooks[1].events[1]: unknown event"),
            "{e}"
        );
        let ok = text
            .replace("https://hooks.example/x", "http://hooks.example/x")
            .replace(", \"deploy.done\"", "");
        let c = crate::parse(&ok, std::path::Path::new("sy.toml")).expect("valid");
        assert_eq!(c.control().webhooks.len(), 2);
        assert_eq!(c.control().webhooks[1].url().port(), 80);
    }
}
