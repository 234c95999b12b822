//! IntelligenceBank access scopes: what a token may ask the proxy to do, by HTTP method.
//!
//! - `ib:read`: `GET`, `HEAD` and `OPTIONS` only: an agent that can look but not change anything.
//! - `ib:write`: every method the proxy forwards (it includes `ib:read`).
//!
//! A grant whose scope names neither (today's `profile`, the only scope before these existed) is a *legacy*
//! grant and may use every method, so existing configurations and tokens keep today's behaviour. An operator
//! who wants a client limited gives it `ib:read` (and not `ib:write`); a policy that issues tokens to agents
//! must always put one of the two in the grant.
//!
//! A refusal names the scope that would have allowed the request; `errors::ApiError::InsufficientScope` writes
//! the RFC 6750 §3.1 `WWW-Authenticate` value that tells the client to ask for it (MCP incremental consent).
//!
//! Pure: no I/O, no knowledge of sessions or tokens beyond the space-separated scope string.

use http::Method;

/// Read-only access to the IntelligenceBank API through the proxy.
pub const IB_READ: &str = "ib:read";
/// Read-write access: every proxied method.
pub const IB_WRITE: &str = "ib:write";
/// The user's identity at `/userinfo`; the only scope before the `ib:*` scopes.
pub const PROFILE: &str = "profile";

/// Every scope this gateway knows, in the order the metadata documents list them.
pub const SUPPORTED: &[&str] = &[PROFILE, IB_READ, IB_WRITE];

/// The scope a refused request needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredScope {
    Read,
    Write,
}

impl RequiredScope {
    pub fn as_str(self) -> &'static str {
        match self {
            RequiredScope::Read => IB_READ,
            RequiredScope::Write => IB_WRITE,
        }
    }
}

/// Methods that read and never change anything on IB.
fn is_read_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// May a grant with `scope` (space-separated, as stored with the session and carried by the token) send
/// `method` through the proxy? `Err` names the scope that would allow it.
pub fn method_allowed(scope: &str, method: &Method) -> Result<(), RequiredScope> {
    let (mut read, mut write) = (false, false);
    for name in scope.split(' ') {
        match name {
            IB_READ => read = true,
            IB_WRITE => write = true,
            _ => {}
        }
    }
    let legacy = !read && !write;
    if legacy || write || (read && is_read_only(method)) {
        Ok(())
    } else if is_read_only(method) {
        Err(RequiredScope::Read)
    } else {
        Err(RequiredScope::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "PROPFIND"];

    fn method(name: &str) -> Method {
        Method::from_bytes(name.as_bytes()).unwrap()
    }

    #[test]
    fn read_scope_allows_get_head_and_options_only() {
        for name in ALL_METHODS {
            let expected = if ["GET", "HEAD", "OPTIONS"].contains(name) { Ok(()) } else { Err(RequiredScope::Write) };
            assert_eq!(method_allowed("profile ib:read", &method(name)), expected, "{name}");
        }
    }

    #[test]
    fn write_scope_allows_every_method_with_or_without_read() {
        for name in ALL_METHODS {
            assert_eq!(method_allowed("ib:write", &method(name)), Ok(()), "{name}");
            assert_eq!(method_allowed("ib:read ib:write", &method(name)), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_legacy_grant_without_ib_scopes_keeps_every_method() {
        for scope in ["profile", "", "openid email"] {
            for name in ALL_METHODS {
                assert_eq!(method_allowed(scope, &method(name)), Ok(()), "{scope:?} {name}");
            }
        }
    }

    #[test]
    fn scope_names_match_exactly() {
        // Look-alikes are not the write scope: a read grant stays read-only.
        for scope in ["ib:read IB:WRITE", "ib:read ib:write2", "ib:read ib:writ", "ib:read  ib:write:x"] {
            assert_eq!(method_allowed(scope, &Method::POST), Err(RequiredScope::Write), "{scope:?}");
        }
        // Only a look-alike of read: a legacy grant.
        assert_eq!(method_allowed("ib:reader", &Method::POST), Ok(()));
    }

    #[test]
    fn supported_lists_every_scope_once() {
        assert_eq!(SUPPORTED, &["profile", "ib:read", "ib:write"]);
    }
}
