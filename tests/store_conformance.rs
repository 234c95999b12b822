//! The token-store conformance suite: one set of behaviours, run against every backend.
//!
//! `suite::*` takes any `Arc<dyn TokenStore>` and is instantiated by `conformance!` for the memory store,
//! Redis standalone and Redis Cluster, so the test names read `memory::…`, `redis_standalone::…`,
//! `redis_cluster::…`. `redis_suite::*` also looks at Redis itself (key layout, TTLs, outages).
//!
//! Redis variants need `IBGW_TEST_REDIS_URL` and `IBGW_TEST_REDIS_CLUSTER_URLS` (`./scripts/test.sh` starts
//! private servers and exports them); without them they fail, they never skip. Each test uses its own key
//! prefix. Times passed to the store are explicit (`now`), so grace windows and expiry are tested by moving
//! `now`, not by sleeping; only the TTL test sleeps (once, ~2 s).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::store::*;
use common::{free_port, RedisServer};
use ib_oauth_gateway::config::RedisMode;
use ib_oauth_gateway::session::{rules, Limits, Session, SessionId, SessionState, SessionStatus};
use ib_oauth_gateway::store::{
    now_unix, CodeRedemption, RecordKind, RotateOutcome, StoreError, TokenStore, EXPIRED_SESSION_TAIL_SECONDS,
};
use ib_oauth_gateway::tokens::{self, RefreshToken, TokenHash};

/// The behaviours every backend shares.
mod suite {
    use super::*;

    fn rotated(outcome: RotateOutcome) -> Session {
        match outcome {
            RotateOutcome::Rotated(session) => session,
            other => panic!("expected Rotated, got {other:?}"),
        }
    }

    async fn current(store: &dyn TokenStore, id: &SessionId) -> Session {
        store.get_session(id).await.expect("get_session").expect("session exists")
    }

    pub async fn create_then_get_round_trips_every_field(store: Arc<dyn TokenStore>) {
        let now = now_unix();
        let session =
            Session::start(SessionId::generate(), grant_for(CLIENT, Some(now - 600), Some(SESSION_HOURS)), now, 120);
        assert_eq!(session.sid_created_at, now - 600);
        store_session(store.as_ref(), &session, now).await;

        let stored = current(store.as_ref(), &session.id).await;
        assert_eq!(stored, session, "every field round-trips");
        assert_eq!(stored.grant, session.grant);
        assert_eq!(stored.grant.sid.expose(), session.grant.sid.expose());
        assert_eq!(stored.sid_created_at, now - 600);
        assert_eq!(stored.sid_expiry, now - 600 + u64::from(SESSION_HOURS) * 3_600);
        assert_eq!(stored.refresh_count, 0);
        assert_eq!(stored.last_refresh_at, None);
        assert_eq!(stored.state, SessionState::Active);
        store.ping().await.expect("ping");
    }

    pub async fn unknown_session_reads_as_none(store: Arc<dyn TokenStore>) {
        assert_eq!(store.get_session(&SessionId::generate()).await.expect("get_session"), None);
    }

    pub async fn rotation_increments_refresh_count_and_keeps_sid_created_at(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let (session, token) = start_session(store.as_ref(), t0).await;

        let first = Prepared::new(&session.id, &token);
        let after_first = rotated(store.rotate_refresh(&first.request(&session.id, t0 + 10)).await.unwrap());
        assert_eq!(after_first.refresh_count, 1);
        assert_eq!(after_first.last_refresh_at, Some(t0 + 10));
        assert_eq!(after_first.id, session.id);
        assert_eq!(after_first.sid_created_at, session.sid_created_at);
        assert_eq!(after_first.sid_expiry, session.sid_expiry);
        assert_eq!(after_first.grant, session.grant, "the grant (and the IB sid) never changes");
        assert_eq!(after_first.state, SessionState::Active);
        assert_eq!(current(store.as_ref(), &session.id).await, after_first, "Rotated returns the stored session");

        // The successor is now the current token and rotates in turn.
        let second = Prepared::new(&session.id, &first.successor);
        let after_second = rotated(store.rotate_refresh(&second.request(&session.id, t0 + 20)).await.unwrap());
        assert_eq!(after_second.refresh_count, 2);
        assert_eq!(after_second.last_refresh_at, Some(t0 + 20));
        assert_eq!(after_second.sid_created_at, session.sid_created_at);
        assert_eq!(after_second.sid_expiry, session.sid_expiry);
        assert_eq!(current(store.as_ref(), &session.id).await, after_second);
    }

    pub async fn old_token_within_grace_repeats_the_same_sealed_successor(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let (session, token) = start_session(store.as_ref(), t0).await;
        let winner = Prepared::new(&session.id, &token);
        let after = rotated(store.rotate_refresh(&winner.request(&session.id, t0)).await.unwrap());

        // A retry with the old token (with a successor of its own, which must not take effect).
        for now in [t0, t0 + 1, t0 + GRACE - 1] {
            let retry = Prepared::new(&session.id, &token);
            match store.rotate_refresh(&retry.request(&session.id, now)).await.unwrap() {
                RotateOutcome::Repeated { session: repeated, sealed_successor } => {
                    assert_eq!(repeated, after, "a repeat changes nothing");
                    assert_eq!(sealed_successor, winner.sealed, "the very sealed successor of the rotation");
                    assert_eq!(tokens::open_successor(&token, &sealed_successor), Some(winner.successor.clone()));
                    assert_eq!(tokens::open_successor(&retry.successor, &sealed_successor), None);
                }
                other => panic!("old token at now={now} (grace until {}) gave {other:?}", t0 + GRACE),
            }
        }
        assert_eq!(current(store.as_ref(), &session.id).await.refresh_count, 1);

        // The retry's own successor was never stored: the winner's successor is the one that rotates.
        assert_eq!(rotated(rotate_once(store.as_ref(), &session.id, &winner.successor, t0 + 2).await).refresh_count, 2);
    }

    pub async fn old_token_after_grace_is_reuse_and_revokes_the_session(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let (session, token) = start_session(store.as_ref(), t0).await;
        let first = Prepared::new(&session.id, &token);
        rotated(store.rotate_refresh(&first.request(&session.id, t0)).await.unwrap());

        // The grace window is [t0, t0 + GRACE): at t0 + GRACE the old token is a replay.
        assert_eq!(rotate_once(store.as_ref(), &session.id, &token, t0 + GRACE).await, RotateOutcome::ReuseDetected);
        let revoked = current(store.as_ref(), &session.id).await;
        assert_eq!(revoked.state, SessionState::Revoked);
        assert_eq!(revoked.refresh_count, 1);

        // Even the current token is now refused.
        assert_eq!(
            rotate_once(store.as_ref(), &session.id, &first.successor, t0 + GRACE + 1).await,
            RotateOutcome::Refused(SessionStatus::Revoked)
        );
        assert_eq!(current(store.as_ref(), &session.id).await, revoked, "nothing changed after revocation");
    }

    pub async fn older_retired_token_is_reuse_even_within_its_grace_window(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let (session, a) = start_session(store.as_ref(), t0).await;
        let a_to_b = Prepared::new(&session.id, &a);
        rotated(store.rotate_refresh(&a_to_b.request(&session.id, t0)).await.unwrap());
        let b_to_c = Prepared::new(&session.id, &a_to_b.successor);
        rotated(store.rotate_refresh(&b_to_c.request(&session.id, t0 + 1)).await.unwrap());

        // `a` is two generations old: only the most recent rotation is repeatable.
        assert_eq!(rotate_once(store.as_ref(), &session.id, &a, t0 + 2).await, RotateOutcome::ReuseDetected);
        assert_eq!(current(store.as_ref(), &session.id).await.state, SessionState::Revoked);

        // Revocation forgets the grace window, as `end_session` does: `b` (rotated 2 s ago, GRACE is 30 s) is
        // no longer repeated but is a retired token like any other.
        assert_eq!(
            rotate_once(store.as_ref(), &session.id, &a_to_b.successor, t0 + 3).await,
            RotateOutcome::ReuseDetected
        );
        // And the current token is refused.
        assert_eq!(
            rotate_once(store.as_ref(), &session.id, &b_to_c.successor, t0 + 3).await,
            RotateOutcome::Refused(SessionStatus::Revoked)
        );
    }

    pub async fn wrong_client_id_is_invalid_and_changes_nothing(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let (session, token) = start_session(store.as_ref(), t0).await;
        let first = Prepared::new(&session.id, &token);
        let after = rotated(store.rotate_refresh(&first.request(&session.id, t0)).await.unwrap());

        // The current token, the just-rotated one (in grace) and the same after grace: all bound to CLIENT.
        let attempts = [(&first.successor, t0 + 1), (&token, t0 + 1), (&token, t0 + GRACE + 5)];
        for (presented, now) in attempts {
            let attempt = Prepared::new(&session.id, presented);
            let request = attempt.request_with(&session.id, "another-client", now, LIMITS, GRACE);
            assert_eq!(store.rotate_refresh(&request).await.unwrap(), RotateOutcome::Invalid);
        }
        assert_eq!(current(store.as_ref(), &session.id).await, after, "not rotated, not revoked");

        // The right client still rotates the current token.
        assert_eq!(rotated(rotate_once(store.as_ref(), &session.id, &first.successor, t0 + 2).await).refresh_count, 2);
    }

    pub async fn unknown_token_of_the_session_is_invalid_and_does_not_revoke(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let (session, token) = start_session(store.as_ref(), t0).await;
        let first = Prepared::new(&session.id, &token);
        let after = rotated(store.rotate_refresh(&first.request(&session.id, t0)).await.unwrap());

        // Well-formed, names this session, but never issued: a guess, not a replay.
        let forged = RefreshToken::generate(&session.id);
        assert!(RefreshToken::parse(forged.expose()).is_some());
        for now in [t0 + 1, t0 + GRACE + 1] {
            let attempt = Prepared::new(&session.id, &forged);
            assert_eq!(store.rotate_refresh(&attempt.request(&session.id, now)).await.unwrap(), RotateOutcome::Invalid);
        }
        assert_eq!(current(store.as_ref(), &session.id).await, after);
        let next = Prepared::new(&session.id, &first.successor);
        rotated(store.rotate_refresh(&next.request(&session.id, t0 + 2)).await.unwrap());
    }

    pub async fn rotation_of_an_unknown_session_is_invalid(store: Arc<dyn TokenStore>) {
        let id = SessionId::generate();
        let token = RefreshToken::generate(&id);
        let attempt = Prepared::new(&id, &token);
        assert_eq!(store.rotate_refresh(&attempt.request(&id, now_unix())).await.unwrap(), RotateOutcome::Invalid);
        assert_eq!(store.get_session(&id).await.unwrap(), None, "rotation creates nothing");
    }

    pub async fn refresh_limit_refuses_the_third_rotation_and_count_stays(store: Arc<dyn TokenStore>) {
        let limits = Limits { max_refresh_count: 2, ..LIMITS };
        let t0 = now_unix();
        let (session, mut token) = start_session(store.as_ref(), t0).await;
        let mut last_step = None;
        for n in 1..=2u32 {
            let step = Prepared::new(&session.id, &token);
            let request = step.request_with(&session.id, CLIENT, t0 + u64::from(n), limits, GRACE);
            assert_eq!(rotated(store.rotate_refresh(&request).await.unwrap()).refresh_count, n);
            token = step.successor.clone();
            last_step = Some(step);
        }
        // A retry of the last allowed rotation (within grace) still gets its successor: the limit stops the
        // next refresh, not the answer to this one.
        let last_step = last_step.expect("two rotations");
        let retry = Prepared::new(&session.id, &last_step.old);
        match store.rotate_refresh(&retry.request_with(&session.id, CLIENT, t0 + 3, limits, GRACE)).await.unwrap() {
            RotateOutcome::Repeated { session: repeated, sealed_successor } => {
                assert_eq!(repeated.refresh_count, 2);
                assert_eq!(sealed_successor, last_step.sealed);
            }
            other => panic!("retry of the last allowed rotation gave {other:?}"),
        }
        let third = Prepared::new(&session.id, &token);
        let request = third.request_with(&session.id, CLIENT, t0 + 3, limits, GRACE);
        assert_eq!(
            store.rotate_refresh(&request).await.unwrap(),
            RotateOutcome::Refused(SessionStatus::RefreshLimitExceeded)
        );
        let stored = current(store.as_ref(), &session.id).await;
        assert_eq!(stored.refresh_count, 2);
        assert_eq!(stored.last_refresh_at, Some(t0 + 2));
        assert_eq!(stored.state, SessionState::Active, "a refused refresh does not end the session");
        assert_eq!(rules::refresh_status(&stored, t0 + 3, &limits), SessionStatus::RefreshLimitExceeded);
        // The limit stops refreshes, not the session: its access status is still usable.
        assert!(rules::access_status(&stored, t0 + 3, &limits).is_usable());
    }

    pub async fn session_expiry_boundary_agrees_with_rules(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let (session, token) = start_session(store.as_ref(), t0).await;
        let last_second = session.sid_expiry - 1;

        assert_eq!(rules::refresh_status(&session, last_second, &LIMITS), SessionStatus::NearExpiry);
        let first = Prepared::new(&session.id, &token);
        let after = rotated(store.rotate_refresh(&first.request(&session.id, last_second)).await.unwrap());
        assert_eq!(after.refresh_count, 1);

        // At sid_expiry: the successor is refused as Expired, and so is a grace-window repeat.
        assert_eq!(rules::refresh_status(&after, session.sid_expiry, &LIMITS), SessionStatus::Expired);
        assert_eq!(
            rotate_once(store.as_ref(), &session.id, &first.successor, session.sid_expiry).await,
            RotateOutcome::Refused(SessionStatus::Expired)
        );
        assert_eq!(
            rotate_once(store.as_ref(), &session.id, &token, session.sid_expiry).await,
            RotateOutcome::Refused(SessionStatus::Expired)
        );
        assert_eq!(current(store.as_ref(), &session.id).await, after, "refusals change nothing");
    }

    /// Every combination of time (around the near-expiry margin and `sid_expiry`), refresh limit and state:
    /// the store rotates exactly when `rules::refresh_status` is usable, and otherwise refuses with its status.
    pub async fn refresh_decision_agrees_with_session_rules_at_every_boundary(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let margin = LIMITS.near_expiry_margin;
        let mut checked = 0;
        for state in [SessionState::Active, SessionState::Revoked, SessionState::UpstreamRejected] {
            for max_refresh_count in [0u32, 1] {
                let limits = Limits { max_refresh_count, ..LIMITS };
                let sample = new_session(t0);
                let expiry = sample.sid_expiry;
                for now in [t0, expiry - margin - 1, expiry - margin, expiry - 1, expiry, expiry + 1] {
                    let (mut session, token) = start_session(store.as_ref(), t0).await;
                    if state != SessionState::Active {
                        assert!(store.end_session(&session.id, state).await.unwrap());
                        session.state = state;
                    }
                    assert_eq!(current(store.as_ref(), &session.id).await, session);
                    let expected = rules::refresh_status(&session, now, &limits);
                    let attempt = Prepared::new(&session.id, &token);
                    let request = attempt.request_with(&session.id, CLIENT, now, limits, GRACE);
                    let outcome = store.rotate_refresh(&request).await.unwrap();
                    if expected.is_usable() {
                        assert!(
                            matches!(outcome, RotateOutcome::Rotated(_)),
                            "{state:?}, max {max_refresh_count}, now = expiry{:+}: rules say {expected:?}, \
                             store said {outcome:?}",
                            now as i64 - expiry as i64
                        );
                    } else {
                        assert_eq!(
                            outcome,
                            RotateOutcome::Refused(expected),
                            "{state:?}, max {max_refresh_count}, now = expiry{:+}",
                            now as i64 - expiry as i64
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 36);
    }

    /// The refresh rule, stated once: may a session in `state`, refreshed `refreshed` times already, with a
    /// limit of `max` refreshes, be refreshed at `sid_expiry + at`? Both twins of the rule run these cases —
    /// `session::rules::refresh_status` (which the memory store calls) and `src/store/lua/rotate.lua` (Redis'
    /// own copy, in the same atomic step as the rotation) — so they cannot drift apart.
    const REFRESH_RULE: &[(SessionState, u32, u32, i64, SessionStatus)] = &[
        // state, refreshed, max, at (seconds from sid_expiry), the rule's answer
        (SessionState::Active, 0, 5, -3_600, SessionStatus::Active),
        (SessionState::Active, 0, 5, -301, SessionStatus::Active),
        (SessionState::Active, 0, 5, -300, SessionStatus::NearExpiry),
        (SessionState::Active, 0, 5, -1, SessionStatus::NearExpiry),
        (SessionState::Active, 0, 5, 0, SessionStatus::Expired),
        (SessionState::Active, 0, 5, 1, SessionStatus::Expired),
        (SessionState::Active, 4, 5, -3_600, SessionStatus::Active),
        (SessionState::Active, 5, 5, -3_600, SessionStatus::RefreshLimitExceeded),
        (SessionState::Active, 0, 0, -3_600, SessionStatus::RefreshLimitExceeded),
        // An ended or expired session says so, whatever its refresh count.
        (SessionState::Active, 5, 5, 0, SessionStatus::Expired),
        (SessionState::Revoked, 0, 5, -3_600, SessionStatus::Revoked),
        (SessionState::Revoked, 5, 5, 1, SessionStatus::Revoked),
        (SessionState::UpstreamRejected, 0, 5, -3_600, SessionStatus::UpstreamRejected),
        (SessionState::UpstreamRejected, 5, 5, 0, SessionStatus::UpstreamRejected),
    ];

    pub async fn the_refresh_rule_table_holds_for_the_rules_and_for_the_store(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        for &(state, refreshed, max, at, expected) in REFRESH_RULE {
            let case = format!("{state:?}, refreshed {refreshed} of {max}, at sid_expiry{at:+}");
            let limits = Limits { max_refresh_count: max, ..LIMITS };
            let (mut session, mut token) = start_session(store.as_ref(), t0).await;
            // Refresh it `refreshed` times (under a limit that allows it), then end it if the case says so.
            for _ in 0..refreshed {
                let attempt = Prepared::new(&session.id, &token);
                let request =
                    attempt.request_with(&session.id, CLIENT, t0, Limits { max_refresh_count: 100, ..LIMITS }, 0);
                let RotateOutcome::Rotated(rotated) = store.rotate_refresh(&request).await.unwrap() else {
                    panic!("{case}: could not prepare the refresh count")
                };
                session = rotated;
                token = attempt.successor.clone();
            }
            if state != SessionState::Active {
                assert!(store.end_session(&session.id, state).await.unwrap());
                session.state = state;
            }
            let now = (session.sid_expiry as i64 + at) as u64;
            assert_eq!(rules::refresh_status(&session, now, &limits), expected, "the rules: {case}");
            let attempt = Prepared::new(&session.id, &token);
            let outcome = store.rotate_refresh(&attempt.request_with(&session.id, CLIENT, now, limits, GRACE)).await;
            match outcome.unwrap() {
                RotateOutcome::Rotated(_) => assert!(expected.is_usable(), "the store rotated: {case}"),
                refused => assert_eq!(refused, RotateOutcome::Refused(expected), "the store: {case}"),
            }
        }
    }

    pub async fn expired_refresh_token_is_invalid(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let session = new_session(t0);
        let token = RefreshToken::generate(&session.id);
        store.create_session(&session, &token.hash(), t0 + 10, t0).await.unwrap();

        assert_eq!(rotate_once(store.as_ref(), &session.id, &token, t0 + 10).await, RotateOutcome::Invalid);
        assert_eq!(current(store.as_ref(), &session.id).await, session, "not rotated, not revoked");
        // One second earlier it was still good.
        assert_eq!(rotated(rotate_once(store.as_ref(), &session.id, &token, t0 + 9).await).refresh_count, 1);
    }

    /// The successor's lifetime is `min(now + refresh_ttl, sid_expiry)`, and a successor past it is Invalid.
    pub async fn successor_expires_after_refresh_ttl(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let (session, token) = start_session(store.as_ref(), t0).await;
        let first = Prepared::new(&session.id, &token);
        let mut request = first.request(&session.id, t0);
        request.refresh_ttl = 100;
        rotated(store.rotate_refresh(&request).await.unwrap());

        let late = Prepared::new(&session.id, &first.successor);
        assert_eq!(store.rotate_refresh(&late.request(&session.id, t0 + 100)).await.unwrap(), RotateOutcome::Invalid);
        let in_time = Prepared::new(&session.id, &first.successor);
        rotated(store.rotate_refresh(&in_time.request(&session.id, t0 + 99)).await.unwrap());
    }

    pub async fn concurrent_rotations_of_one_token_rotate_exactly_once(store: Arc<dyn TokenStore>) {
        const TASKS: usize = 50;
        let t0 = now_unix();
        let (session, token) = start_session(store.as_ref(), t0).await;
        let id = Arc::new(session.id.clone());
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (store, id, token, barrier) = (store.clone(), id.clone(), token.clone(), barrier.clone());
                tokio::spawn(async move {
                    let mine = Prepared::new(&id, &token);
                    barrier.wait().await;
                    let outcome = store.rotate_refresh(&mine.request(&id, t0)).await.expect("rotate_refresh");
                    (mine, outcome)
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }

        let winners: Vec<_> = results.iter().filter(|(_, o)| matches!(o, RotateOutcome::Rotated(_))).collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one rotation wins: {:?}",
            results.iter().map(|r| &r.1).collect::<Vec<_>>()
        );
        let winner = &winners[0].0;
        for (_, outcome) in &results {
            match outcome {
                RotateOutcome::Rotated(s) => assert_eq!(s.refresh_count, 1),
                RotateOutcome::Repeated { session, sealed_successor } => {
                    assert_eq!(session.refresh_count, 1);
                    assert_eq!(sealed_successor, &winner.sealed);
                    assert_eq!(tokens::open_successor(&token, sealed_successor), Some(winner.successor.clone()));
                }
                other => panic!("a concurrent retry must be repeated, got {other:?}"),
            }
        }
        let stored = current(store.as_ref(), &session.id).await;
        assert_eq!(stored.refresh_count, 1);
        assert_eq!(stored.state, SessionState::Active);
        // Only the winner's successor is current.
        let loser = results.iter().find(|(_, o)| !matches!(o, RotateOutcome::Rotated(_))).expect("a loser");
        assert_eq!(rotate_once(store.as_ref(), &session.id, &loser.0.successor, t0 + 1).await, RotateOutcome::Invalid);
        let via_winner = Prepared::new(&session.id, &winner.successor);
        rotated(store.rotate_refresh(&via_winner.request(&session.id, t0 + 1)).await.unwrap());
    }

    async fn end_session_then_rotation_is_refused(store: &dyn TokenStore, state: SessionState, status: SessionStatus) {
        let t0 = now_unix();
        let (session, token) = start_session(store, t0).await;
        let first = Prepared::new(&session.id, &token);
        rotated(store.rotate_refresh(&first.request(&session.id, t0)).await.unwrap());

        assert!(store.end_session(&session.id, state).await.unwrap(), "ending an active session");
        assert!(!store.end_session(&session.id, state).await.unwrap(), "ending it again");
        assert!(!store.end_session(&session.id, SessionState::Revoked).await.unwrap(), "an ended session stays ended");
        let ended = current(store, &session.id).await;
        assert_eq!(ended.state, state);
        assert_eq!(ended.refresh_count, 1);

        assert_eq!(rotate_once(store, &session.id, &first.successor, t0 + 1).await, RotateOutcome::Refused(status));
        // Ending a session forgets the grace window: within it, the old token is no longer repeated but is a
        // retired token coming back (both backends: ReuseDetected).
        let repeat = Prepared::new(&session.id, &token);
        assert_eq!(
            store.rotate_refresh(&repeat.request(&session.id, t0 + 1)).await.unwrap(),
            RotateOutcome::ReuseDetected,
            "an ended session serves no successor"
        );
        assert_ne!(current(store, &session.id).await.state, SessionState::Active);

        assert!(!store.end_session(&SessionId::generate(), state).await.unwrap(), "unknown session");
    }

    pub async fn end_session_revoked_is_reported_once_and_refuses_rotation(store: Arc<dyn TokenStore>) {
        end_session_then_rotation_is_refused(store.as_ref(), SessionState::Revoked, SessionStatus::Revoked).await;
    }

    pub async fn end_session_upstream_rejected_is_reported_once_and_refuses_rotation(store: Arc<dyn TokenStore>) {
        end_session_then_rotation_is_refused(
            store.as_ref(),
            SessionState::UpstreamRejected,
            SessionStatus::UpstreamRejected,
        )
        .await;
    }

    pub async fn metered_get_counts_requests_per_session_and_window(store: Arc<dyn TokenStore>) {
        let now = now_unix();
        let window = now / 60;
        let (session, token) = start_session(store.as_ref(), now).await;
        let (other, _) = start_session(store.as_ref(), now).await;

        for expected in 1..=3u64 {
            let (seen, count) = store.get_session_metered(&session.id, window, 60).await.unwrap();
            assert_eq!(seen.as_ref(), Some(&session), "the same session get_session reads");
            assert_eq!(count, expected);
        }
        // Counters are per session and per window.
        assert_eq!(store.get_session_metered(&other.id, window, 60).await.unwrap(), (Some(other.clone()), 1));
        assert_eq!(store.get_session_metered(&session.id, window + 1, 60).await.unwrap().1, 1);
        assert_eq!(store.get_session_metered(&session.id, window, 60).await.unwrap().1, 4);

        // It reads the session as stored, whatever its state (the caller applies the rules).
        let first = Prepared::new(&session.id, &token);
        let after = rotated(store.rotate_refresh(&first.request(&session.id, now)).await.unwrap());
        assert_eq!(store.get_session_metered(&session.id, window, 60).await.unwrap(), (Some(after), 5));
        assert!(store.end_session(&session.id, SessionState::UpstreamRejected).await.unwrap());
        let (ended, count) = store.get_session_metered(&session.id, window, 60).await.unwrap();
        assert_eq!(ended.map(|s| s.state), Some(SessionState::UpstreamRejected));
        assert_eq!(count, 6);

        // No session, no count, and nothing is created.
        let unknown = SessionId::generate();
        assert_eq!(store.get_session_metered(&unknown, window, 60).await.unwrap(), (None, 0));
        assert_eq!(store.get_session_metered(&unknown, window, 60).await.unwrap(), (None, 0));
        assert_eq!(store.get_session(&unknown).await.unwrap(), None);
    }

    /// The approximate backend's sync adds many sessions' requests at once, to the counters the exact backend
    /// counts in; each entry gets its own session's total.
    pub async fn meters_added_in_one_call_are_the_counters_metered_gets_count(store: Arc<dyn TokenStore>) {
        let now = now_unix();
        let window = now / 60;
        let mut sessions = Vec::new();
        for _ in 0..3 {
            sessions.push(start_session(store.as_ref(), now).await.0);
        }
        assert_eq!(store.get_session_metered(&sessions[1].id, window, 60).await.unwrap().1, 1);
        let adds: Vec<(SessionId, u64)> = sessions.iter().zip([5, 0, 2]).map(|(s, n)| (s.id.clone(), n)).collect();
        let totals: Vec<u64> = store.add_to_meters(window, &adds, 60).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(totals, [5, 1, 2], "0 only reads");
        assert_eq!(store.get_session_metered(&sessions[0].id, window, 60).await.unwrap().1, 6);
        assert_eq!(store.add_to_meter(&sessions[2].id, window + 1, 1, 60).await.unwrap(), 1, "per window");
        assert!(store.add_to_meters(window, &[], 60).await.is_empty());
    }

    pub async fn concurrent_metered_gets_count_every_request_once(store: Arc<dyn TokenStore>) {
        const TASKS: u64 = 20;
        let now = now_unix();
        let (session, _) = start_session(store.as_ref(), now).await;
        let id = Arc::new(session.id.clone());
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.get_session_metered(&id, now / 60, 60).await.expect("get_session_metered").1
                })
            })
            .collect();
        let mut counts = Vec::new();
        for task in tasks {
            counts.push(task.await.expect("task"));
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=TASKS).collect::<Vec<_>>(), "each request counted exactly once");
    }

    pub async fn revoke_by_refresh_ends_only_the_clients_own_session_once(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        // Revoking with the current token.
        let (session, token) = start_session(store.as_ref(), t0).await;
        let forged = RefreshToken::generate(&session.id);
        assert!(!store.revoke_by_refresh(&session.id, &forged.hash(), CLIENT).await.unwrap(), "unknown token");
        assert!(!store.revoke_by_refresh(&session.id, &token.hash(), "another-client").await.unwrap(), "other client");
        assert_eq!(current(store.as_ref(), &session.id).await.state, SessionState::Active);
        assert!(store.revoke_by_refresh(&session.id, &token.hash(), CLIENT).await.unwrap());
        assert!(!store.revoke_by_refresh(&session.id, &token.hash(), CLIENT).await.unwrap(), "only once");
        assert_eq!(current(store.as_ref(), &session.id).await.state, SessionState::Revoked);
        assert_eq!(
            rotate_once(store.as_ref(), &session.id, &token, t0).await,
            RotateOutcome::Refused(SessionStatus::Revoked)
        );

        // Revoking with a retired token also ends the session, and forgets the grace window.
        let (session, token) = start_session(store.as_ref(), t0).await;
        let first = Prepared::new(&session.id, &token);
        rotated(store.rotate_refresh(&first.request(&session.id, t0)).await.unwrap());
        assert!(store.revoke_by_refresh(&session.id, &token.hash(), CLIENT).await.unwrap());
        let ended = current(store.as_ref(), &session.id).await;
        assert_eq!((ended.state, ended.refresh_count), (SessionState::Revoked, 1));
        assert_eq!(rotate_once(store.as_ref(), &session.id, &token, t0 + 1).await, RotateOutcome::ReuseDetected);
        assert_eq!(
            rotate_once(store.as_ref(), &session.id, &first.successor, t0 + 1).await,
            RotateOutcome::Refused(SessionStatus::Revoked)
        );

        // An ended session is not revoked again; an unknown one is not created.
        let (session, token) = start_session(store.as_ref(), t0).await;
        assert!(store.end_session(&session.id, SessionState::UpstreamRejected).await.unwrap());
        assert!(!store.revoke_by_refresh(&session.id, &token.hash(), CLIENT).await.unwrap());
        assert_eq!(current(store.as_ref(), &session.id).await.state, SessionState::UpstreamRejected);
        let unknown = SessionId::generate();
        let unknown_token = RefreshToken::generate(&unknown);
        assert!(!store.revoke_by_refresh(&unknown, &unknown_token.hash(), CLIENT).await.unwrap());
        assert_eq!(store.get_session(&unknown).await.unwrap(), None);
    }

    pub async fn find_by_refresh_finds_only_the_current_token_with_its_expiry(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let session = new_session(t0);
        let token = RefreshToken::generate(&session.id);
        store.create_session(&session, &token.hash(), t0 + 1_000, t0).await.unwrap();
        assert_eq!(
            store.find_by_refresh(&session.id, &token.hash()).await.unwrap(),
            Some((session.clone(), t0 + 1_000))
        );
        let forged = RefreshToken::generate(&session.id);
        assert_eq!(store.find_by_refresh(&session.id, &forged.hash()).await.unwrap(), None);

        let first = Prepared::new(&session.id, &token);
        let mut request = first.request(&session.id, t0 + 10);
        request.refresh_ttl = 500;
        let after = rotated(store.rotate_refresh(&request).await.unwrap());
        assert_eq!(store.find_by_refresh(&session.id, &token.hash()).await.unwrap(), None, "retired: not current");
        assert_eq!(
            store.find_by_refresh(&session.id, &first.successor.hash()).await.unwrap(),
            Some((after, t0 + 10 + 500)),
            "the successor, valid min(now + refresh_ttl, sid_expiry)"
        );

        // An ended session is still found, with its state: the caller applies the rules.
        assert!(store.end_session(&session.id, SessionState::Revoked).await.unwrap());
        let (found, _) = store.find_by_refresh(&session.id, &first.successor.hash()).await.unwrap().expect("found");
        assert_eq!(found.state, SessionState::Revoked);

        let unknown = SessionId::generate();
        assert_eq!(store.find_by_refresh(&unknown, &RefreshToken::generate(&unknown).hash()).await.unwrap(), None);
    }

    pub async fn code_is_redeemed_once_then_replay_names_the_first_session(store: Arc<dyn TokenStore>) {
        let code = TokenHash::of(&tokens::random_secret());
        let grant = b"{\"grant\":\"bytes \xff\x00 kept as is\"}".to_vec();
        store.put_code(&code, &grant, 60).await.unwrap();

        let first = SessionId::generate();
        assert_eq!(store.redeem_code(&code, &first, 60).await.unwrap(), CodeRedemption::Redeemed(grant));
        let second = SessionId::generate();
        assert_eq!(store.redeem_code(&code, &second, 60).await.unwrap(), CodeRedemption::Replayed(first.clone()));
        assert_eq!(store.redeem_code(&code, &second, 60).await.unwrap(), CodeRedemption::Replayed(first));
    }

    /// RFC 6749 §4.1.2 at any moment: a replay that lands after the code was redeemed but before the redeeming
    /// request created its session means that session is never created.
    pub async fn a_replay_before_the_session_exists_means_it_is_never_created(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let session = new_session(t0);
        let code = TokenHash::of(&tokens::random_secret());
        store.put_code(&code, b"grant", 60).await.unwrap();
        assert_eq!(
            store.redeem_code(&code, &session.id, 60).await.unwrap(),
            CodeRedemption::Redeemed(b"grant".to_vec())
        );
        let replay = store.redeem_code(&code, &SessionId::generate(), 60).await.unwrap();
        assert_eq!(replay, CodeRedemption::Replayed(session.id.clone()));
        assert!(store.end_issued_session(&session.id, 60).await.unwrap(), "the id is reserved");
        let refresh = RefreshToken::generate(&session.id);
        let created = store.create_session(&session, &refresh.hash(), t0 + 3_600, t0).await;
        assert!(matches!(created, Err(StoreError::SessionIdTaken)), "{created:?}");
        assert_eq!(store.get_session(&session.id).await.unwrap(), None, "nothing usable was created");
        let prepared = Prepared::new(&session.id, &refresh);
        assert_eq!(store.rotate_refresh(&prepared.request(&session.id, t0)).await.unwrap(), RotateOutcome::Invalid);
    }

    /// The same replay after the session was created revokes it, once.
    pub async fn a_replay_after_the_session_exists_revokes_it(store: Arc<dyn TokenStore>) {
        let t0 = now_unix();
        let (session, token) = start_session(store.as_ref(), t0).await;
        assert!(store.end_issued_session(&session.id, 60).await.unwrap());
        assert!(!store.end_issued_session(&session.id, 60).await.unwrap(), "already ended");
        assert_eq!(current(store.as_ref(), &session.id).await.state, SessionState::Revoked);
        let prepared = Prepared::new(&session.id, &token);
        let refused = store.rotate_refresh(&prepared.request(&session.id, t0)).await.unwrap();
        assert_eq!(refused, RotateOutcome::Refused(SessionStatus::Revoked));
    }

    pub async fn unknown_code_is_unknown(store: Arc<dyn TokenStore>) {
        let code = TokenHash::of(&tokens::random_secret());
        assert_eq!(store.redeem_code(&code, &SessionId::generate(), 60).await.unwrap(), CodeRedemption::Unknown);
        // Looking up an unknown code does not create it.
        assert_eq!(store.redeem_code(&code, &SessionId::generate(), 60).await.unwrap(), CodeRedemption::Unknown);
    }

    pub async fn concurrent_redeems_of_one_code_redeem_exactly_once(store: Arc<dyn TokenStore>) {
        const TASKS: usize = 20;
        let code = TokenHash::of(&tokens::random_secret());
        store.put_code(&code, b"grant", 60).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    let issued = SessionId::generate();
                    barrier.wait().await;
                    (issued.clone(), store.redeem_code(&code, &issued, 60).await.expect("redeem_code"))
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }
        let winners: Vec<_> = results.iter().filter(|(_, r)| matches!(r, CodeRedemption::Redeemed(_))).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        assert_eq!(winners[0].1, CodeRedemption::Redeemed(b"grant".to_vec()));
        let winner = &winners[0].0;
        for (_, redemption) in &results {
            match redemption {
                CodeRedemption::Redeemed(_) => {}
                CodeRedemption::Replayed(session) => assert_eq!(session, winner, "a replay names the winner"),
                CodeRedemption::Unknown => panic!("a spent code is not unknown"),
            }
        }
    }

    pub async fn records_put_get_take_once(store: Arc<dyn TokenStore>) {
        let key = tokens::random_secret();
        let value = b"record \x00\xff value".to_vec();
        assert_eq!(store.get_record(RecordKind::LoginAttempt, &key).await.unwrap(), None);
        store.put_record(RecordKind::LoginAttempt, &key, &value, 60).await.unwrap();
        assert_eq!(store.get_record(RecordKind::LoginAttempt, &key).await.unwrap(), Some(value.clone()));
        assert_eq!(
            store.get_record(RecordKind::LoginAttempt, &key).await.unwrap(),
            Some(value.clone()),
            "get keeps it"
        );
        // Kinds are separate namespaces.
        assert_eq!(store.get_record(RecordKind::Client, &key).await.unwrap(), None);
        // Put replaces.
        store.put_record(RecordKind::LoginAttempt, &key, b"newer", 60).await.unwrap();
        assert_eq!(store.take_record(RecordKind::LoginAttempt, &key).await.unwrap(), Some(b"newer".to_vec()));
        assert_eq!(store.take_record(RecordKind::LoginAttempt, &key).await.unwrap(), None, "taken once");
        assert_eq!(store.get_record(RecordKind::LoginAttempt, &key).await.unwrap(), None);

        store.put_record(RecordKind::Client, &key, b"client", 60).await.unwrap();
        assert_eq!(store.get_record(RecordKind::Client, &key).await.unwrap(), Some(b"client".to_vec()));
        assert_eq!(store.get_record(RecordKind::LoginAttempt, &key).await.unwrap(), None);
    }

    pub async fn concurrent_takes_of_one_record_yield_it_once(store: Arc<dyn TokenStore>) {
        const TASKS: usize = 20;
        let key = Arc::new(tokens::random_secret());
        store.put_record(RecordKind::LoginAttempt, &key, b"once", 60).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (store, key, barrier) = (store.clone(), key.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.take_record(RecordKind::LoginAttempt, &key).await.expect("take_record")
                })
            })
            .collect();
        let mut taken = Vec::new();
        for task in tasks {
            if let Some(value) = task.await.expect("task") {
                taken.push(value);
            }
        }
        assert_eq!(taken, vec![b"once".to_vec()]);
    }

    /// Codes, spent-code markers, records, rate-limit counters and session records all expire with their TTL (real time: the one
    /// test that sleeps, once, for everything).
    pub async fn codes_records_and_sessions_expire_with_their_ttl(store: Arc<dyn TokenStore>) {
        let now = now_unix();
        let code = TokenHash::of(&tokens::random_secret());
        store.put_code(&code, b"short", 1).await.unwrap();
        let spent = TokenHash::of(&tokens::random_secret());
        store.put_code(&spent, b"spent", 60).await.unwrap();
        let issued = SessionId::generate();
        assert_eq!(store.redeem_code(&spent, &issued, 1).await.unwrap(), CodeRedemption::Redeemed(b"spent".to_vec()));
        let lasting = TokenHash::of(&tokens::random_secret());
        store.put_code(&lasting, b"lasting", 60).await.unwrap();

        let (short_key, long_key) = (tokens::random_secret(), tokens::random_secret());
        store.put_record(RecordKind::LoginAttempt, &short_key, b"short", 1).await.unwrap();
        store.put_record(RecordKind::Client, &long_key, b"long", 60).await.unwrap();

        // sid_expiry = now - 3599, so the record is kept EXPIRED_SESSION_TAIL_SECONDS - 3599 = 1 s.
        let hours = 1;
        let login_time = now - 3_599 - hours * 3_600;
        let short = Session::start(SessionId::generate(), grant_for(CLIENT, Some(login_time), Some(1)), now, 120);
        assert_eq!(short.sid_expiry + EXPIRED_SESSION_TAIL_SECONDS - now, 1);
        store_session(store.as_ref(), &short, now).await;
        let (long, _) = start_session(store.as_ref(), now).await;
        // A rate-limit counter that lives 1 s.
        let window = now / 60;
        assert_eq!(store.get_session_metered(&long.id, window, 1).await.unwrap().1, 1);
        assert_eq!(store.get_session_metered(&long.id, window, 1).await.unwrap().1, 2);

        assert!(store.get_record(RecordKind::LoginAttempt, &short_key).await.unwrap().is_some());
        let expired = store.get_session(&short.id).await.unwrap().expect("stored, in its tail");
        assert_eq!(rules::access_status(&expired, now, &LIMITS), SessionStatus::Expired);

        tokio::time::sleep(Duration::from_millis(2_200)).await;

        assert_eq!(store.redeem_code(&code, &SessionId::generate(), 60).await.unwrap(), CodeRedemption::Unknown);
        assert_eq!(store.redeem_code(&spent, &SessionId::generate(), 60).await.unwrap(), CodeRedemption::Unknown);
        assert_eq!(store.get_record(RecordKind::LoginAttempt, &short_key).await.unwrap(), None);
        assert_eq!(store.take_record(RecordKind::LoginAttempt, &short_key).await.unwrap(), None);
        assert_eq!(store.get_session(&short.id).await.unwrap(), None);
        let listed: Vec<SessionId> =
            store.user_sessions(&short.grant.user.uuid, 10).await.unwrap().sessions.into_iter().map(|s| s.id).collect();
        assert_eq!(listed, vec![long.id.clone()], "the user's index forgets the expired session");
        // What had a longer TTL is still there.
        assert_eq!(
            store.redeem_code(&lasting, &SessionId::generate(), 60).await.unwrap(),
            CodeRedemption::Redeemed(b"lasting".to_vec())
        );
        assert_eq!(store.get_record(RecordKind::Client, &long_key).await.unwrap(), Some(b"long".to_vec()));
        assert!(store.get_session(&long.id).await.unwrap().is_some());
        assert_eq!(store.get_session_metered(&long.id, window, 60).await.unwrap().1, 1, "the counter expired");
    }

    /// A session of `user` whose IB login began at `login_time`.
    fn session_of(user: &str, login_time: u64, now: u64) -> Session {
        let mut grant = grant_for(CLIENT, Some(login_time), Some(SESSION_HOURS));
        grant.user.uuid = user.to_string();
        Session::start(SessionId::generate(), grant, now, 120)
    }

    /// The ids of a user's listing, at most `limit`.
    async fn listed(store: &dyn TokenStore, user: &str, limit: usize) -> (Vec<SessionId>, bool) {
        let listing = store.user_sessions(user, limit).await.unwrap();
        (listing.sessions.into_iter().map(|s| s.id).collect(), listing.truncated)
    }

    pub async fn user_sessions_lists_one_users_live_sessions_oldest_first(store: Arc<dyn TokenStore>) {
        let now = now_unix();
        let (user, other) = (format!("user-{}", tokens::random_secret()), format!("other-{}", tokens::random_secret()));
        let newer = session_of(&user, now - 10, now);
        let older = session_of(&user, now - 20, now);
        let others = session_of(&other, now - 30, now);
        for session in [&newer, &older, &others] {
            store_session(store.as_ref(), session, now).await;
        }
        let store = store.as_ref();
        assert_eq!(listed(store, &user, 10).await, (vec![older.id.clone(), newer.id.clone()], false));
        assert_eq!(store.user_sessions(&user, 10).await.unwrap().sessions[0], older, "every field as stored");
        assert_eq!(listed(store, &other, 10).await, (vec![others.id.clone()], false));
        assert_eq!(listed(store, "nobody", 10).await, (vec![], false));

        // An ended session leaves the listing (and the index): it never takes a live session's place.
        assert!(store.end_session(&newer.id, SessionState::Revoked).await.unwrap());
        assert_eq!(listed(store, &user, 10).await, (vec![older.id.clone()], false));
        assert_eq!(listed(store, &other, 10).await, (vec![others.id.clone()], false), "others untouched");
    }

    pub async fn a_users_listing_past_its_limit_says_so_and_ended_sessions_free_their_places(
        store: Arc<dyn TokenStore>,
    ) {
        let now = now_unix();
        let user = format!("user-{}", tokens::random_secret());
        let mut sessions: Vec<Session> = (0..12).map(|n| session_of(&user, now - 100 + n, now)).collect();
        for session in &sessions {
            store_session(store.as_ref(), session, now).await;
        }
        sessions.sort_by_key(|s| s.sid_created_at);
        let store = store.as_ref();
        let (first, truncated) = listed(store, &user, 10).await;
        assert_eq!((first.len(), truncated), (10, true), "12 sessions, 10 listed, and the listing says so");
        // End three of those listed: the next listing has the other nine, and nothing more to say.
        for id in &first[..3] {
            assert!(store.end_session(id, SessionState::Revoked).await.unwrap());
        }
        let (rest, truncated) = listed(store, &user, 10).await;
        assert_eq!((rest.len(), truncated), (9, false));
        assert!(rest.iter().all(|id| !first[..3].contains(id)), "no ended session is listed");
        // Ending page after page reaches every session.
        let mut ended = 3;
        loop {
            let (page, truncated) = listed(store, &user, 4).await;
            for id in &page {
                assert!(store.end_session(id, SessionState::Revoked).await.unwrap());
                ended += 1;
            }
            if !truncated {
                break;
            }
        }
        assert_eq!(ended, 12);
        assert_eq!(listed(store, &user, 10).await, (vec![], false));
    }

    pub async fn a_session_refused_at_creation_is_never_listed(store: Arc<dyn TokenStore>) {
        let now = now_unix();
        let user = format!("user-{}", tokens::random_secret());
        // A replayed code reserved the id before its session was created: creation fails.
        let session = session_of(&user, now, now);
        assert!(store.end_issued_session(&session.id, 60).await.unwrap());
        let token = RefreshToken::generate(&session.id);
        let refused = store.create_session(&session, &token.hash(), now + 60, now).await;
        assert!(matches!(refused, Err(StoreError::SessionIdTaken)), "{refused:?}");
        assert_eq!(listed(store.as_ref(), &user, 10).await, (vec![], false));
    }

    pub async fn session_count_counts_created_sessions(store: Arc<dyn TokenStore>) {
        let now = now_unix();
        let before = store.session_count().await.unwrap();
        assert_eq!(before, 0, "a fresh store (or a fresh key prefix) has no sessions");
        for _ in 0..5 {
            start_session(store.as_ref(), now).await;
        }
        assert_eq!(store.session_count().await.unwrap(), 5);
    }
}

/// Behaviours only Redis has: key layout, TTLs as Redis sees them, outages.
mod redis_suite {
    use super::*;

    /// The session key carries the hash tag `{<session id>}` (so a session is one slot in a cluster) and a
    /// TTL of at most `sid_expiry + tail - now`.
    pub async fn session_key_is_hash_tagged_and_lives_until_sid_expiry_plus_tail(backend: &Backend) {
        let raw = backend.raw.as_ref().expect("raw connection");
        let store = backend.store.as_ref();
        let now = now_unix();
        let (session, token) = start_session(store, now).await;
        let key = backend.session_key(&session.id);
        assert!(key.contains(&format!("{{{}}}", session.id.as_str())), "{key}");
        let exists: i64 = raw.query(redis::cmd("EXISTS").arg(&key)).await;
        assert_eq!(exists, 1, "the session is stored under {key}");

        let ttl: i64 = raw.query(redis::cmd("TTL").arg(&key)).await;
        let bound = (session.sid_expiry + EXPIRED_SESSION_TAIL_SECONDS - now) as i64;
        assert!(ttl > 0 && ttl <= bound, "TTL {ttl} not in (0, {bound}]");
        assert!(ttl >= bound - 5, "TTL {ttl} much shorter than {bound}");

        if backend.mode == Some(RedisMode::Cluster) {
            let key_slot: i64 = raw.query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key)).await;
            let id_slot: i64 = raw.query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(session.id.as_str())).await;
            assert_eq!(key_slot, id_slot, "the session key hashes by its session id");
            let meter_key = backend.meter_key(&session.id, 1);
            let meter_slot: i64 = raw.query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(&meter_key)).await;
            assert_eq!(meter_slot, id_slot, "the rate-limit counter is in the session's slot");
        }

        // Rotation and ending keep the TTL (no key is re-created without one).
        let first = Prepared::new(&session.id, &token);
        assert!(matches!(
            store.rotate_refresh(&first.request(&session.id, now)).await.unwrap(),
            RotateOutcome::Rotated(_)
        ));
        assert!(store.end_session(&session.id, SessionState::Revoked).await.unwrap());
        let ttl: i64 = raw.query(redis::cmd("TTL").arg(&key)).await;
        assert!(ttl > 0 && ttl <= bound, "TTL {ttl} after rotation and end");
    }

    /// Every key the store writes has a TTL.
    pub async fn every_key_the_store_writes_expires(backend: &Backend) {
        let raw = backend.raw.as_ref().expect("raw connection");
        let store = backend.store.as_ref();
        let now = now_unix();
        let (session, token) = start_session(store, now).await;
        let first = Prepared::new(&session.id, &token);
        store.rotate_refresh(&first.request(&session.id, now)).await.unwrap();
        let code = TokenHash::of(&tokens::random_secret());
        store.put_code(&code, b"g", 60).await.unwrap();
        let spent = TokenHash::of(&tokens::random_secret());
        store.put_code(&spent, b"g", 60).await.unwrap();
        store.redeem_code(&spent, &session.id, 60).await.unwrap();
        store.put_record(RecordKind::LoginAttempt, "attempt", b"v", 60).await.unwrap();
        store.put_record(RecordKind::Client, "client", b"v", 60).await.unwrap();
        store.get_session_metered(&session.id, 7, 60).await.unwrap();

        let keys = [
            backend.session_key(&session.id),
            backend.meter_key(&session.id, 7),
            format!("{}:c:{}", backend.prefix, code.encoded()),
            format!("{}:c:{}", backend.prefix, spent.encoded()),
            format!("{}:login:attempt", backend.prefix),
            format!("{}:client:client", backend.prefix),
            format!("{}:u:{{{}}}", backend.prefix, TokenHash::of(&session.grant.user.uuid).encoded()),
        ];
        for key in keys {
            let ttl: i64 = raw.query(redis::cmd("TTL").arg(&key)).await;
            assert!(ttl > 0, "{key} has TTL {ttl} (-2: missing, -1: no expiry)");
        }
    }

    /// A store pointed at a port where nothing listens does not start: `Unavailable`, quickly.
    pub async fn connecting_to_a_dead_port_fails_fast_with_unavailable(backend: &Backend) {
        let mode = backend.mode.expect("a Redis backend");
        let port = free_port();
        let urls = match mode {
            RedisMode::Cluster => (0..3).map(|_| format!("redis://127.0.0.1:{port}")).collect(),
            _ => vec![format!("redis://127.0.0.1:{port}")],
        };
        let config = redis_config(mode, urls, &unique_prefix());
        let started = Instant::now();
        let result = ib_oauth_gateway::store::redis::RedisStore::connect(&config).await;
        let elapsed = started.elapsed();
        match result {
            Err(StoreError::Unavailable(message)) => assert!(!message.is_empty()),
            Err(other) => panic!("expected Unavailable, got {other:?}"),
            Ok(_) => panic!("connected to a port where nothing listens"),
        }
        assert!(
            elapsed < Duration::from_millis(config.connect_timeout_ms),
            "took {elapsed:?}, connect timeout is {} ms",
            config.connect_timeout_ms
        );
    }

    /// Server killed: errors (never "no such session"); server back on the same port: the same store works
    /// again within a few seconds.
    pub async fn store_recovers_after_the_server_restarts() {
        let mut server = RedisServer::start();
        let config = redis_config(RedisMode::Standalone, vec![server.url()], &unique_prefix());
        let store = ib_oauth_gateway::store::redis::RedisStore::connect(&config).await.expect("connect");
        let now = now_unix();
        let (session, token) = start_session(&store, now).await;
        assert!(store.get_session(&session.id).await.unwrap().is_some());

        server.stop();
        // The local session cache is flushed once its subscription notices the server is gone (at once on a
        // closed connection); from then on every read goes to the server.
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.session_cache_live() {
            assert!(Instant::now() < deadline, "the session cache still serves 5 s after the server went away");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for attempt in 0..3 {
            match store.get_session(&session.id).await {
                Err(StoreError::Unavailable(_)) => {}
                other => panic!("attempt {attempt}: with the server down, get_session gave {other:?}"),
            }
        }
        let attempt = Prepared::new(&session.id, &token);
        assert!(matches!(
            store.rotate_refresh(&attempt.request(&session.id, now)).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
        assert!(matches!(
            store.redeem_code(&TokenHash::of("c"), &session.id, 60).await,
            Err(StoreError::Unavailable(_))
        ));

        server.restart();
        let deadline = Instant::now() + Duration::from_secs(10);
        let recovered = loop {
            match store.ping().await {
                Ok(()) => break Instant::now(),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("store did not recover within 10 s of the restart: {e}"),
            }
        };
        let _ = recovered;
        // The data was not persisted: the old session is gone (a clean None, not an error).
        assert_eq!(store.get_session(&session.id).await.unwrap(), None);
        // Scripts are reloaded on NOSCRIPT: create, rotate and read work on the new server.
        let (fresh, fresh_token) = start_session(&store, now).await;
        assert_eq!(store.get_session(&fresh.id).await.unwrap(), Some(fresh.clone()));
        let rotation = Prepared::new(&fresh.id, &fresh_token);
        assert!(matches!(
            store.rotate_refresh(&rotation.request(&fresh.id, now)).await.unwrap(),
            RotateOutcome::Rotated(_)
        ));
    }
}

/// One test per (backend, behaviour): `backend_tests!(module, constructor, [suite…], [redis_suite…], items…)`.
macro_rules! backend_tests {
    ($module:ident, $make:expr, [$($common:ident),* $(,)?], [$($redis:ident),* $(,)?] $(, $extra:item)* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $common() {
                    let backend = $make.await;
                    suite::$common(backend.store.clone()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $redis() {
                    let backend = $make.await;
                    redis_suite::$redis(&backend).await;
                }
            )*
            $($extra)*
        }
    };
}

macro_rules! conformance {
    (common: [$($common:ident),* $(,)?], redis: [$($redis:ident),* $(,)?] $(,)?) => {
        backend_tests!(memory, Backend::memory(), [$($common),*], []);
        backend_tests!(
            redis_standalone,
            Backend::redis_standalone(),
            [$($common),*],
            [$($redis),*],
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn store_recovers_after_the_server_restarts() {
                redis_suite::store_recovers_after_the_server_restarts().await;
            }
        );
        backend_tests!(redis_cluster, Backend::redis_cluster(), [$($common),*], [$($redis),*]);
    };
}

conformance! {
    common: [
        create_then_get_round_trips_every_field,
        unknown_session_reads_as_none,
        rotation_increments_refresh_count_and_keeps_sid_created_at,
        old_token_within_grace_repeats_the_same_sealed_successor,
        old_token_after_grace_is_reuse_and_revokes_the_session,
        older_retired_token_is_reuse_even_within_its_grace_window,
        wrong_client_id_is_invalid_and_changes_nothing,
        unknown_token_of_the_session_is_invalid_and_does_not_revoke,
        rotation_of_an_unknown_session_is_invalid,
        refresh_limit_refuses_the_third_rotation_and_count_stays,
        session_expiry_boundary_agrees_with_rules,
        refresh_decision_agrees_with_session_rules_at_every_boundary,
        the_refresh_rule_table_holds_for_the_rules_and_for_the_store,
        expired_refresh_token_is_invalid,
        successor_expires_after_refresh_ttl,
        concurrent_rotations_of_one_token_rotate_exactly_once,
        end_session_revoked_is_reported_once_and_refuses_rotation,
        end_session_upstream_rejected_is_reported_once_and_refuses_rotation,
        metered_get_counts_requests_per_session_and_window,
        concurrent_metered_gets_count_every_request_once,
        meters_added_in_one_call_are_the_counters_metered_gets_count,
        revoke_by_refresh_ends_only_the_clients_own_session_once,
        find_by_refresh_finds_only_the_current_token_with_its_expiry,
        code_is_redeemed_once_then_replay_names_the_first_session,
        unknown_code_is_unknown,
        a_replay_before_the_session_exists_means_it_is_never_created,
        a_replay_after_the_session_exists_revokes_it,
        concurrent_redeems_of_one_code_redeem_exactly_once,
        records_put_get_take_once,
        concurrent_takes_of_one_record_yield_it_once,
        codes_records_and_sessions_expire_with_their_ttl,
        session_count_counts_created_sessions,
        user_sessions_lists_one_users_live_sessions_oldest_first,
        a_users_listing_past_its_limit_says_so_and_ended_sessions_free_their_places,
        a_session_refused_at_creation_is_never_listed,
    ],
    redis: [
        session_key_is_hash_tagged_and_lives_until_sid_expiry_plus_tail,
        every_key_the_store_writes_expires,
        connecting_to_a_dead_port_fails_fast_with_unavailable,
    ],
}

/// Tokens and ids used above are what the gateway hands out (guards the helpers themselves).
#[test]
fn helpers_build_well_formed_tokens() {
    let id = SessionId::generate();
    let token = RefreshToken::generate(&id);
    let (parsed, _) = RefreshToken::parse(token.expose()).expect("well-formed");
    assert_eq!(parsed, id);
    let prepared = Prepared::new(&id, &token);
    assert_eq!(tokens::open_successor(&token, &prepared.sealed), Some(prepared.successor.clone()));
    let distinct: HashSet<_> = (0..10).map(|_| unique_prefix()).collect();
    assert_eq!(distinct.len(), 10);
}
