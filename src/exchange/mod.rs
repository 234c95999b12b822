//! A request as the gateway's own endpoints see it, and the reply they give. The OAuth handlers work on
//! these plain values (no Pingora types), so they can be tested without a server; `gateway` converts.
//! [`cors`] shapes the CORS headers of every reply.

pub mod cors;

use bytes::Bytes;
use http::{HeaderMap, Method};
use percent_encoding::percent_decode;
use std::net::IpAddr;

use crate::errors::ApiError;

/// A new request id: 64 random bits as 16 hex digits, unique enough to find a request in the logs and cheap on
/// the hot path. Every request the gateway answers gets one (proxied, OAuth and admin alike).
pub fn new_request_id() -> String {
    let mut digits = [0u8; 16];
    // Cannot fail: 8 bytes fill 16 digits exactly.
    let _ = hex::encode_to_slice(rand::random::<u64>().to_be_bytes(), &mut digits);
    digits.iter().map(|&digit| char::from(digit)).collect()
}

pub struct Request {
    pub method: Method,
    pub path: String,
    /// The raw query string, without `?` (empty when absent).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub client_ip: Option<IpAddr>,
    /// The gateway's id of this request (the `X-Request-Id` of its answer), for the logs.
    pub request_id: String,
}

/// Decoded `application/x-www-form-urlencoded` parameters, strict: malformed percent-encoding or invalid
/// UTF-8 is an error, and asking for a parameter that appears twice is an error (RFC 6749 §3.1).
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

fn decode_component(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
            if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(ApiError::InvalidRequest("Malformed percent-encoding".into()));
            }
        }
    }
    let plus_as_space = raw.replace('+', " ");
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::InvalidRequest("Parameters must be UTF-8".into()))
}

impl Params {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        for part in text.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode_component(name)?, decode_component(value)?));
        }
        Ok(Params(pairs))
    }

    /// The parameter's value; empty values count as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(n, v)| n == name && !v.is_empty());
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(ApiError::InvalidRequest(format!("Parameter {name} is repeated")));
        }
        Ok(first)
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)?.ok_or_else(|| ApiError::InvalidRequest(format!("Missing parameter {name}")))
    }
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query_params(&self) -> Result<Params, ApiError> {
        Params::parse(&self.query)
    }

    /// The body as a form; the content type must say so.
    pub fn form(&self) -> Result<Params, ApiError> {
        let content_type = self.header("content-type").unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ApiError::UnsupportedMediaType("application/x-www-form-urlencoded"));
        }
        let text =
            std::str::from_utf8(&self.body).map_err(|_| ApiError::InvalidRequest("Body must be UTF-8".into()))?;
        Params::parse(text)
    }

    pub fn accepts_json(&self) -> bool {
        self.header("accept").is_some_and(|a| a.contains("application/json"))
    }

    /// The Bearer token from the `Authorization` header (never from the query string).
    /// `Ok(None)` when no credentials were sent at all.
    pub fn bearer_token(&self) -> Result<Option<&str>, ApiError> {
        bearer_token(self.headers.get(http::header::AUTHORIZATION))
    }
}

/// The token of an `Authorization: Bearer` header; `Ok(None)` when there is no header, `invalid_token` when it
/// is not a usable Bearer credential.
pub fn bearer_token(authorization: Option<&http::HeaderValue>) -> Result<Option<&str>, ApiError> {
    let Some(value) = authorization else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidToken(crate::errors::INVALID_ACCESS_TOKEN))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::InvalidToken(crate::errors::INVALID_ACCESS_TOKEN)),
    }
}

/// A complete response written by the gateway itself.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Reply {
            status,
            headers: vec![
                ("Content-Type", "application/json".into()),
                ("Cache-Control", "no-store".into()),
                ("Pragma", "no-cache".into()),
            ],
            body: Bytes::from(body.to_string()),
        }
    }

    pub fn error(error: &ApiError, resource_metadata: &str) -> Self {
        let mut reply = Reply::json(error.status(), &error.body());
        reply.headers.extend(error.headers(resource_metadata));
        reply
    }

    pub fn html(status: u16, body: String) -> Self {
        Reply {
            status,
            headers: vec![
                ("Content-Type", "text/html; charset=utf-8".into()),
                ("Cache-Control", "no-store".into()),
                (
                    "Content-Security-Policy",
                    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                     form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
                        .into(),
                ),
                ("X-Frame-Options", "DENY".into()),
                ("Referrer-Policy", "no-referrer".into()),
            ],
            body: Bytes::from(body),
        }
    }

    pub fn asset(content_type: &'static str, body: &'static str) -> Self {
        Reply {
            status: 200,
            headers: vec![("Content-Type", content_type.into()), ("Cache-Control", "public, max-age=300".into())],
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    pub fn redirect(location: String) -> Self {
        Reply {
            status: 302,
            headers: vec![("Location", location), ("Cache-Control", "no-store".into())],
            body: Bytes::new(),
        }
    }

    /// Sets a header, replacing one of the same name.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        self.headers.push((name, value.into()));
        self
    }
}

/// `text` safe inside HTML text and quoted attribute values: `&`, `<`, `>`, `"` and `'` as entities. The one
/// escaping of the authorization page and of the mock platform's pages.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(escape_html(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn params_decode_plus_and_percent() {
        let params = Params::parse("a=b+c&d=%2Fx%3D").unwrap();
        assert_eq!(params.get("a").unwrap(), Some("b c"));
        assert_eq!(params.get("d").unwrap(), Some("/x="));
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let params = Params::parse("code=a&code=b").unwrap();
        assert!(matches!(params.get("code"), Err(ApiError::InvalidRequest(_))));
    }

    #[test]
    fn malformed_percent_encoding_is_refused() {
        for bad in ["a=%", "a=%4", "a=%zz", "a=%C3%28"] {
            assert!(Params::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_values_count_as_absent() {
        let params = Params::parse("state=&x=1").unwrap();
        assert_eq!(params.get("state").unwrap(), None);
        assert!(params.required("state").is_err());
    }
}
