//! Who may use the admin API: the one check of `Authorization: Bearer <admin.token>`, in constant time.
//!
//! Without `admin.token` the admin API is off: its paths answer `404 not_found`, as if they did not exist.
//! A missing or wrong token is `401 invalid_token` with `WWW-Authenticate: Bearer realm="admin"` (RFC 6750).
//! Never logs, echoes or compares the token in a way that depends on its content.

use http::{Response, StatusCode};
use pingora::http::RequestHeader;

use super::reply::{json, not_found, with_header};
use crate::config::secret::{digest, digests_match};
use crate::config::Secret;

/// The admin token (if any) and what it protects.
pub struct AdminAuth {
    /// SHA-256 of the token: comparing digests takes the same time whatever the presented token's length.
    token_digest: Option<[u8; 32]>,
    protect_metrics: bool,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("enabled", &self.enabled())
            .field("protect_metrics", &self.protect_metrics)
            .finish()
    }
}

impl AdminAuth {
    pub fn new(token: Option<&Secret>, protect_metrics: bool) -> Self {
        AdminAuth { token_digest: token.map(|t| digest(t.expose())), protect_metrics }
    }

    /// Is the admin API on (a token configured)?
    pub fn enabled(&self) -> bool {
        self.token_digest.is_some()
    }

    /// Does `/metrics` need the token (`admin.protect_metrics`)?
    pub fn protects_metrics(&self) -> bool {
        self.protect_metrics
    }

    /// Lets a request through to an admin path, or gives the answer it gets instead: `404 not_found` when
    /// no token is configured, `401 invalid_token` when the `Authorization: Bearer` token is missing or wrong.
    // The refusal is the answer itself, made once per refused request: boxing it would buy nothing.
    #[allow(clippy::result_large_err)]
    pub fn authorize(&self, request: &RequestHeader) -> Result<(), Response<Vec<u8>>> {
        let Some(expected) = &self.token_digest else {
            return Err(not_found("No such path"));
        };
        let presented = crate::exchange::bearer_token(request.headers.get(http::header::AUTHORIZATION));
        match presented {
            Ok(Some(token)) if digests_match(&digest(token), expected) => Ok(()),
            Ok(Some(_)) | Err(_) => Err(unauthorized(Some("The admin token is not valid"))),
            Ok(None) => Err(unauthorized(None)),
        }
    }
}

/// RFC 6750 §3: no credentials get the challenge alone; wrong ones get `error="invalid_token"` in it too.
fn unauthorized(wrong: Option<&str>) -> Response<Vec<u8>> {
    let description = wrong.unwrap_or("The admin API needs Authorization: Bearer <admin.token>");
    let body = serde_json::json!({"error": "invalid_token", "error_description": description});
    let challenge = match wrong {
        Some(description) => {
            format!(r#"Bearer realm="admin", error="invalid_token", error_description="{description}""#)
        }
        None => r#"Bearer realm="admin""#.to_string(),
    };
    with_header(json(StatusCode::UNAUTHORIZED, &body), http::header::WWW_AUTHENTICATE, &challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn request(authorization: Option<&str>) -> RequestHeader {
        let mut request = RequestHeader::build("POST", b"/admin/reload", None).unwrap();
        if let Some(value) = authorization {
            request.insert_header("Authorization", value).unwrap();
        }
        request
    }

    fn body(response: &Response<Vec<u8>>) -> serde_json::Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[test]
    fn the_right_token_passes_in_any_scheme_case() {
        let auth = AdminAuth::new(Some(&Secret::new(TOKEN)), false);
        assert!(auth.authorize(&request(Some(&format!("Bearer {TOKEN}")))).is_ok());
        assert!(auth.authorize(&request(Some(&format!("bearer {TOKEN}")))).is_ok());
    }

    #[test]
    fn a_missing_token_is_401_with_the_bare_challenge() {
        let auth = AdminAuth::new(Some(&Secret::new(TOKEN)), false);
        let refused = auth.authorize(&request(None)).unwrap_err();
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.headers()[http::header::WWW_AUTHENTICATE], r#"Bearer realm="admin""#);
        assert_eq!(body(&refused)["error"], "invalid_token");
    }

    #[test]
    fn a_wrong_token_is_401_invalid_token_and_never_echoed() {
        let auth = AdminAuth::new(Some(&Secret::new(TOKEN)), false);
        let wrong = "0123456789abcdef0123456789abcdeX";
        for header in [format!("Bearer {wrong}"), format!("Basic {TOKEN}"), format!("Bearer {TOKEN}x"), "Bearer".into()]
        {
            let refused = auth.authorize(&request(Some(&header))).unwrap_err();
            assert_eq!(refused.status(), 401, "{header}");
            let challenge = refused.headers()[http::header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with(r#"Bearer realm="admin", error="invalid_token""#), "{challenge}");
            assert_eq!(body(&refused)["error"], "invalid_token");
            let text = String::from_utf8_lossy(refused.body());
            assert!(!text.contains(wrong) && !text.contains(TOKEN), "{text}");
        }
    }

    #[test]
    fn without_a_token_the_admin_api_does_not_exist() {
        let auth = AdminAuth::new(None, false);
        assert!(!auth.enabled());
        let refused = auth.authorize(&request(Some(&format!("Bearer {TOKEN}")))).unwrap_err();
        assert_eq!(refused.status(), 404);
        assert_eq!(body(&refused)["error"], "not_found");
    }

    #[test]
    fn debug_output_never_shows_the_token_or_its_digest() {
        let auth = AdminAuth::new(Some(&Secret::new(TOKEN)), true);
        let shown = format!("{auth:?}");
        assert!(!shown.contains(TOKEN) && !shown.contains(&hex::encode(digest(TOKEN))), "{shown}");
    }
}
