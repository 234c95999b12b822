//! The session model: one IntelligenceBank login and the OAuth grant built on it.
//!
//! A [`Session`] cannot exist without its `sid_created_at` and `sid_expiry`: [`Session::start`] derives them
//! from IB's `loginTime` and `logintimeoutperiod`, and nothing afterwards moves them (IB sessions cannot be
//! renewed). Refreshing changes only `refresh_count` and `last_refresh_at`. The IB `sid` is held in [`IbSid`],
//! whose `Debug` never prints it. The rules that decide whether a session is usable live in [`rules`].

pub mod rules;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use rules::{Limits, SessionStatus};

/// IB's documented range for `logintimeoutperiod`, in hours.
pub const LOGIN_TIMEOUT_HOURS: std::ops::RangeInclusive<u32> = 1..=120;

/// Our identifier of a session: 128 random bits, base64url. It names Redis keys (as a hash tag) and is
/// embedded in refresh tokens and in the `sid`-free access token; alone it grants nothing.
///
/// Held inline (22 ASCII bytes, no heap): a session id is copied with every session copy a request takes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; SESSION_ID_LEN]);

/// The length of a session id: 16 bytes in base64url without padding.
const SESSION_ID_LEN: usize = 22;

impl SessionId {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let mut id = [0u8; SESSION_ID_LEN];
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let written = base64::Engine::encode_slice(engine, bytes, &mut id);
        debug_assert_eq!(written, Ok(SESSION_ID_LEN));
        SessionId(id)
    }

    /// Accepts only the shape [`SessionId::generate`] makes, so a client-supplied id can name no other key.
    pub fn parse(text: &str) -> Option<Self> {
        let id: [u8; SESSION_ID_LEN] = text.as_bytes().try_into().ok()?;
        id.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_').then_some(SessionId(id))
    }

    pub fn as_str(&self) -> &str {
        // Every byte is ASCII (`generate` and `parse` make no other), so this never fails.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// What logs show instead of the id: 12 characters of its SHA-256, the same in every log line, so lines
    /// about one session can be matched without the logs holding a usable id.
    pub fn log_tag(&self) -> String {
        // The same digest and alphabet as `tokens::TokenHash` (tokens sit above sessions, so not shared).
        // 9 bytes are exactly 12 base64 characters: the first 12 of the whole digest's encoding.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(self.0);
        let mut tag = [0u8; 12];
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        match base64::Engine::encode_slice(engine, &digest[..9], &mut tag) {
            Ok(_) => tag.iter().map(|&c| char::from(c)).collect(),
            Err(_) => base64::Engine::encode(engine, digest)[..12].to_string(),
        }
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = SessionId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a session id")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SessionId, E> {
                SessionId::parse(text).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(text), &self))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({})", self.as_str())
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The IntelligenceBank session id. Sent only to the session's own IB hosts, never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IbSid(String);

impl IbSid {
    pub fn new(sid: impl Into<String>) -> Self {
        IbSid(sid.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for IbSid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IbSid(***)")
    }
}

/// The IB user, as the completed Browser Login reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IbUser {
    pub uuid: String,
    pub first_name: String,
    pub last_name: String,
    /// IB's login has no user e-mail; `adminemail` is not the user's. Kept when a source provides it.
    pub email: Option<String>,
    /// IB's `loginTime`, Unix seconds, as reported.
    pub login_time: Option<u64>,
}

/// Everything a completed IB login told us, plus what the OAuth client asked for. Immutable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    pub sid: IbSid,
    /// `https://company.intelligencebank.com`
    pub platform_url: String,
    /// `https://lbv3us1.intelligencebank.com` (scheme included, no path)
    pub api_v3_url: String,
    /// IB's `clientid` (the customer account), part of every API v3 path.
    pub ib_client_id: String,
    pub user: IbUser,
    /// `logintimeoutperiod` in hours as IB gave it (clamped to 1-120), or `None` when IB omitted it.
    pub login_timeout_hours: Option<u32>,
    pub oauth_client_id: String,
    pub scope: String,
    /// The RFC 8707 resource the grant was made for (canonical), when the client named one; its access
    /// tokens' `aud`. `None`: the gateway itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

#[cfg(test)]
impl SessionGrant {
    /// A grant for unit tests: the `acme` platform, the `lbv3us1` API host, IB account `AbC1`, one hour.
    pub(crate) fn example(oauth_client_id: &str) -> Self {
        SessionGrant {
            sid: IbSid::new("s"),
            platform_url: "https://acme.intelligencebank.com".into(),
            api_v3_url: "https://lbv3us1.intelligencebank.com".into(),
            ib_client_id: "AbC1".into(),
            user: IbUser {
                uuid: "u".into(),
                first_name: String::new(),
                last_name: String::new(),
                email: None,
                login_time: None,
            },
            login_timeout_hours: Some(1),
            oauth_client_id: oauth_client_id.into(),
            scope: "profile".into(),
            resource: None,
        }
    }
}

/// Where a session stands, apart from time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Active,
    /// Ended by the user or the operator (revocation, refresh-token reuse, code replay).
    Revoked,
    /// IB answered 401 for this `sid`: the IB session is gone.
    UpstreamRejected,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Revoked => "revoked",
            SessionState::UpstreamRejected => "upstream_rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(SessionState::Active),
            "revoked" => Some(SessionState::Revoked),
            "upstream_rejected" => Some(SessionState::UpstreamRejected),
            _ => None,
        }
    }
}

/// One IB login as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub grant: Arc<SessionGrant>,
    /// When the IB session began (IB's `loginTime` when plausible, else the time we saw it complete).
    pub sid_created_at: u64,
    /// `sid_created_at + logintimeoutperiod hours`; never moves.
    pub sid_expiry: u64,
    pub refresh_count: u32,
    pub last_refresh_at: Option<u64>,
    pub state: SessionState,
}

impl Session {
    /// Starts a session for a login that completed at `now`.
    pub fn start(id: SessionId, grant: SessionGrant, now: u64, default_timeout_hours: u32) -> Self {
        let sid_created_at = rules::sid_created_at(grant.user.login_time, now);
        let sid_expiry = rules::sid_expiry(sid_created_at, grant.login_timeout_hours, default_timeout_hours);
        Session {
            id,
            grant: Arc::new(grant),
            sid_created_at,
            sid_expiry,
            refresh_count: 0,
            last_refresh_at: None,
            state: SessionState::Active,
        }
    }

    /// Seconds until the IB session ends (0 when it has).
    pub fn remaining(&self, now: u64) -> u64 {
        self.sid_expiry.saturating_sub(now)
    }
}
