//! The gate's decisions on a fake clock: limits, order, expiry, and held requests.

use super::*;

fn settings(limit: u32) -> GateSettings {
    GateSettings {
        limit,
        lease_ms: 60_000,
    }
}

#[test]
fn requests_and_release_answers_keep_their_wire_format() {
    let request = GateRequest {
        holder: "companies/acme/a.md#3:embed:0".into(),
        wait_ms: None,
    };
    assert_eq!(
        serde_json::to_string(&request).expect("serializes"),
        r#"{"holder":"companies/acme/a.md#3:embed:0"}"#
    );
    // A held acquire names its wait; a request without one (an older processor during a
    // deploy) is answered at once.
    let held = GateRequest {
        wait_ms: Some(30_000),
        ..request.clone()
    };
    let wire = r#"{"holder":"companies/acme/a.md#3:embed:0","wait_ms":30000}"#;
    assert_eq!(serde_json::to_string(&held).expect("serializes"), wire);
    assert_eq!(
        serde_json::from_str::<GateRequest>(r#"{"holder":"companies/acme/a.md#3:embed:0"}"#)
            .expect("parses"),
        request
    );
    assert_eq!(
        serde_json::to_string(&GateRelease { released: true }).expect("serializes"),
        r#"{"released":true}"#
    );
}

fn granted(a: Admission) -> bool {
    matches!(a, Admission::Granted { .. })
}

#[test]
fn grants_up_to_the_limit_then_queues_in_order() {
    let mut gate = GateState::default();
    let s = settings(2);
    assert!(granted(gate.acquire("a", 0, &s)));
    assert!(granted(gate.acquire("b", 0, &s)));
    let Admission::Wait { ahead, .. } = gate.acquire("c", 0, &s) else {
        panic!("third caller must wait");
    };
    assert_eq!(ahead, 0);
    let Admission::Wait { ahead, .. } = gate.acquire("d", 1, &s) else {
        panic!("fourth caller must wait");
    };
    assert_eq!(ahead, 1);
    assert!(gate.release("a", 300));
    // "d" asks first, but "c" is ahead of it and due: one slot, one waiter served.
    assert!(!granted(gate.acquire("d", 301, &s)));
    assert!(granted(gate.acquire("c", 302, &s)));
    assert!(gate.release("b", 400));
    assert!(granted(gate.acquire("d", 401, &s)));
    assert_eq!(gate.stats(401).in_flight, 2);
    assert_eq!(gate.stats(401).waiting, 0);
}

#[test]
fn a_slot_is_not_kept_idle_for_a_waiter_that_is_not_due_yet() {
    let mut gate = GateState::default();
    let s = settings(1);
    assert!(granted(gate.acquire("a", 0, &s)));
    let Admission::Wait { retry_after_ms, .. } = gate.acquire("b", 0, &s) else {
        panic!("must wait");
    };
    assert!(gate.release("a", 10));
    // "b" will ask at `retry_after_ms`; "c" asks before that and gets the free slot.
    assert!(granted(gate.acquire("c", retry_after_ms - 1, &s)));
    // Once due, "b" goes before later arrivals.
    assert!(!granted(gate.acquire("d", retry_after_ms, &s)));
    assert!(gate.release("c", retry_after_ms + 1));
    assert!(!granted(gate.acquire("d", retry_after_ms + 2, &s)));
    assert!(granted(gate.acquire("b", retry_after_ms + 3, &s)));
}

#[test]
fn asking_again_is_idempotent() {
    let mut gate = GateState::default();
    let s = settings(1);
    assert!(granted(gate.acquire("a", 0, &s)));
    // A retried request (its answer was lost) gets the same lease, extended.
    assert_eq!(
        gate.acquire("a", 10, &s),
        Admission::Granted { until_ms: 60_010 }
    );
    assert_eq!(gate.stats(10).in_flight, 1);
    assert!(!granted(gate.acquire("b", 10, &s)));
    assert!(!granted(gate.acquire("b", 20, &s)));
    assert_eq!(gate.stats(20).waiting, 1);
}

#[test]
fn releasing_twice_or_after_expiry_changes_nothing() {
    let mut gate = GateState::default();
    let s = settings(1);
    assert!(granted(gate.acquire("a", 0, &s)));
    assert!(gate.release("a", 50));
    assert!(!gate.release("a", 60));
    assert!(granted(gate.acquire("b", 70, &s)));
    // "b" dies holding its lease: it expires, "c" gets the slot, and b's late
    // release does not free c's.
    assert!(!granted(gate.acquire("c", 80, &s)));
    assert!(granted(gate.acquire("c", 60_071, &s)));
    assert!(!gate.release("b", 60_100));
    assert!(!granted(gate.acquire("d", 60_101, &s)));
    assert_eq!(gate.stats(60_101).expired, 1);
}

#[test]
fn a_waiter_that_stops_asking_loses_its_place() {
    let mut gate = GateState::default();
    let s = settings(1);
    assert!(granted(gate.acquire("a", 0, &s)));
    let Admission::Wait { retry_after_ms, .. } = gate.acquire("gone", 0, &s) else {
        panic!("must wait");
    };
    assert!(!granted(gate.acquire("next", 1, &s)));
    gate.release("a", 10);
    // "gone" never comes back: once its grace has passed, "next" is first.
    let later = retry_after_ms + WAITER_GRACE_MS + 1;
    assert!(granted(gate.acquire("next", later, &s)));
}

#[test]
fn waits_follow_the_queue_and_the_hold_time() {
    let mut gate = GateState::default();
    let s = settings(2);
    for (i, holder) in ["a", "b"].iter().enumerate() {
        assert!(granted(gate.acquire(holder, i as u64, &s)));
    }
    gate.release("a", 400);
    gate.release("b", 401);
    // Mean hold ≈ 400 ms and 2 slots: the first waiter needs one slot (≈ 200 ms), the
    // sixth needs six (three rounds of 400 ms).
    for holder in ["c", "d"] {
        assert!(granted(gate.acquire(holder, 500, &s)));
    }
    let waits: Vec<u64> = (0..6)
        .map(|i| match gate.acquire(&format!("w{i}"), 500, &s) {
            Admission::Wait { retry_after_ms, .. } => retry_after_ms,
            Admission::Granted { .. } => panic!("no slot is free"),
        })
        .collect();
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
    assert!((150..=250).contains(&waits[0]), "{waits:?}");
    assert!((1_100..=1_300).contains(&waits[5]), "{waits:?}");
}

#[test]
fn never_more_leases_than_the_limit_in_any_interleaving() {
    // A deterministic pseudo-random schedule of 20 holders asking, releasing and dying.
    let s = GateSettings {
        limit: 3,
        lease_ms: 1_000,
    };
    let mut gate = GateState::default();
    let mut seed = 0x9e37_79b9_u64;
    let mut holding: Vec<String> = Vec::new();
    let mut now = 0;
    let mut done = 0;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        now += seed % 40;
        let who = format!("h{}", (seed >> 8) % 20);
        match (seed >> 20) % 5 {
            0..=2 => {
                if granted(gate.acquire(&who, now, &s)) && !holding.contains(&who) {
                    holding.push(who);
                }
            }
            3 => {
                if let Some(i) = holding.iter().position(|h| *h == who) {
                    holding.swap_remove(i);
                    if gate.release(&who, now) {
                        done += 1;
                    }
                }
            }
            // Dies: never releases; its lease must expire.
            _ => holding.retain(|h| *h != who),
        }
        assert!(gate.stats(now).in_flight <= 3);
    }
    // The gate kept serving: slots came back by release and by expiry.
    let stats = gate.stats(now);
    assert!(done > 200, "{done} releases");
    assert!(stats.granted > 500 && stats.expired > 50, "{stats:?}");
}

fn handed(handoffs: &[HandOff]) -> Vec<&str> {
    handoffs.iter().map(|h| h.holder.as_str()).collect()
}

#[test]
fn a_released_slot_is_handed_to_the_first_held_waiter_inside_the_release() {
    let mut gate = GateState::default();
    let s = settings(1);
    assert!(granted(gate.hold("a", 0, &s, 30_000)));
    // Held waiters are not answered: their requests stay open.
    let Admission::Wait { retry_after_ms, .. } = gate.hold("b", 1, &s, 30_001) else {
        panic!("b must wait");
    };
    assert_eq!(retry_after_ms, 30_000);
    assert!(!granted(gate.hold("c", 2, &s, 30_002)));
    assert!(gate.hand_off(3, &s).is_empty(), "no slot is free");
    assert!(gate.release("a", 100));
    // The release hands the slot on before anyone else can ask: a caller that is not held
    // finds it taken, and the next held waiter stays held.
    assert_eq!(handed(&gate.hand_off(100, &s)), ["b"]);
    assert!(!granted(gate.acquire("d", 101, &s)));
    assert_eq!(gate.stats(101).in_flight, 1);
    assert_eq!(gate.stats(101).held, 1);
    // b's own answer, should it ask again (its answer was lost), is the same lease.
    assert!(granted(gate.acquire("b", 102, &s)));
    assert!(gate.release("b", 200));
    assert_eq!(handed(&gate.hand_off(200, &s)), ["c"]);
    let stats = gate.stats(200);
    assert_eq!((stats.granted, stats.handed_off, stats.held), (3, 2, 0));
}

#[test]
fn held_waiters_are_served_in_arrival_order_and_never_over_the_limit() {
    let mut gate = GateState::default();
    let s = settings(2);
    for (i, holder) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        gate.hold(holder, i as u64, &s, 30_000);
    }
    assert_eq!(gate.stats(5).in_flight, 2);
    gate.release("b", 10);
    gate.release("a", 11);
    assert_eq!(handed(&gate.hand_off(11, &s)), ["c", "d"]);
    assert!(gate.hand_off(12, &s).is_empty());
    gate.release("d", 20);
    assert_eq!(handed(&gate.hand_off(20, &s)), ["e"]);
    assert_eq!(gate.stats(20).in_flight, 2);
}

#[test]
fn a_hold_that_ends_keeps_the_waiters_place_and_asks_back_soon() {
    let mut gate = GateState::default();
    let s = settings(1);
    assert!(granted(gate.acquire("a", 0, &s)));
    assert!(!granted(gate.hold("b", 0, &s, 1_000)));
    assert!(!granted(gate.hold("c", 1, &s, 60_000)));
    // b's hold ends with no slot free: come back soon, not after a queue estimate.
    assert_eq!(
        gate.end_hold("b", 1_000, &s),
        Admission::Wait {
            retry_after_ms: MIN_RETRY_MS,
            ahead: 0
        }
    );
    // While b sleeps, a slot freed goes to the held waiter behind it rather than idle...
    gate.release("a", 1_010);
    assert_eq!(handed(&gate.hand_off(1_010, &s)), ["c"]);
    // ...and b, back and held again, is still first in line.
    let Admission::Wait { ahead, .. } = gate.hold("b", 1_060, &s, 31_060) else {
        panic!("no slot is free");
    };
    assert_eq!(ahead, 0);
    assert!(!granted(gate.hold("d", 1_061, &s, 31_061)));
    gate.release("c", 1_100);
    assert_eq!(handed(&gate.hand_off(1_100, &s)), ["b"]);
}

#[test]
fn a_hold_that_ends_with_a_slot_free_is_granted() {
    let mut gate = GateState::default();
    let s = settings(1);
    assert!(granted(gate.acquire("a", 0, &s)));
    assert!(!granted(gate.hold("b", 0, &s, 1_000)));
    // a died holding its lease; nobody called the gate until b's hold ended.
    let s_short = GateSettings { lease_ms: 500, ..s };
    assert!(granted(gate.end_hold("b", 60_001, &s_short)));
    assert_eq!(gate.stats(60_001).expired, 1);
}

#[test]
fn a_held_request_that_is_never_answered_does_not_keep_a_place() {
    // The open request died with no `end_hold` (its handler was cancelled): once its hold
    // time is over, no slot is handed to it, and after the grace it leaves the queue.
    let mut gate = GateState::default();
    let s = settings(1);
    assert!(granted(gate.acquire("a", 0, &s)));
    assert!(!granted(gate.hold("lost", 0, &s, 5_000)));
    assert!(!granted(gate.hold("next", 1, &s, 60_000)));
    gate.release("a", 6_000);
    assert_eq!(handed(&gate.hand_off(6_000, &s)), ["next"]);
    gate.release("next", 7_100);
    assert!(gate.hand_off(7_100, &s).is_empty());
    assert_eq!(
        gate.stats(7_100).waiting,
        0,
        "the lost waiter's grace is over"
    );
    assert!(granted(gate.acquire("later", 7_101, &s)));
}

#[test]
fn a_restarted_gate_keeps_its_leases_and_queue_but_no_held_request() {
    let mut gate = GateState::default();
    let s = settings(1);
    assert!(granted(gate.hold("a", 0, &s, 30_000)));
    assert!(!granted(gate.hold("b", 1, &s, 30_001)));
    assert!(!granted(gate.hold("c", 2, &s, 30_002)));
    // Evicted or redeployed: the stored state comes back; the open requests do not.
    let stored = serde_json::to_string(&gate).expect("serializes");
    let mut gate: GateState = serde_json::from_str(&stored).expect("parses");
    gate.forget_holds(50);
    gate.release("a", 60);
    // Nobody's request is open, so nothing is handed on; the slot goes to the first waiter
    // that asks again, in order while they are due.
    assert!(gate.hand_off(60, &s).is_empty());
    assert!(!granted(gate.hold("c", 70, &s, 30_070)));
    assert!(granted(gate.hold("b", 80, &s, 30_080)));
    gate.release("b", 90);
    assert_eq!(handed(&gate.hand_off(90, &s)), ["c"]);
    // Stored states from before held requests existed still load.
    let old = r#"{"leases":[],"waiting":[{"holder":"x","due_ms":5,"expires_ms":10}],"mean_hold_ms":400,"granted":7,"expired":0}"#;
    let old: GateState = serde_json::from_str(old).expect("an older state loads");
    assert_eq!(old.stats(6).waiting, 1);
}

#[test]
fn a_lease_whose_holder_died_is_handed_on_once_it_expires() {
    let mut gate = GateState::default();
    let s = GateSettings {
        limit: 1,
        lease_ms: 1_000,
    };
    assert!(granted(gate.acquire("dead", 0, &s)));
    assert!(!granted(gate.hold("b", 10, &s, 30_010)));
    assert!(gate.hand_off(999, &s).is_empty());
    // Any call after the expiry hands the slot on (here: another waiter's arrival).
    assert!(!granted(gate.hold("c", 1_001, &s, 31_001)));
    assert_eq!(handed(&gate.hand_off(1_001, &s)), ["b"]);
    // The dead holder's late release frees nothing.
    assert!(!gate.release("dead", 1_500));
    assert!(gate.hand_off(1_500, &s).is_empty());
    assert_eq!(gate.stats(1_500).expired, 1);
}

#[test]
fn holds_releases_deaths_and_restarts_in_any_interleaving_keep_the_limit_and_serve_everyone() {
    // A deterministic pseudo-random schedule: 30 holders ask (held or not), release, die
    // holding a lease, lose their open request, see their hold end, and the gate restarts.
    let s = GateSettings {
        limit: 3,
        lease_ms: 2_000,
    };
    let mut gate = GateState::default();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut holding: Vec<String> = Vec::new();
    let mut now = 0;
    let mut served = 0;
    for _ in 0..30_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        now += seed % 30;
        let who = format!("h{}", (seed >> 8) % 30);
        let mut grants = Vec::new();
        let answer = match (seed >> 20) % 8 {
            0 | 1 => Some(gate.hold(&who, now, &s, now + 1 + (seed >> 32) % 3_000)),
            2 => Some(gate.acquire(&who, now, &s)),
            3 => Some(gate.end_hold(&who, now, &s)),
            _ => None,
        };
        if answer.is_some_and(granted) {
            grants.push(who.clone());
        }
        match (seed >> 20) % 8 {
            4 | 5 => {
                if let Some(i) = holding.iter().position(|h| *h == who) {
                    holding.swap_remove(i);
                    if gate.release(&who, now) {
                        served += 1;
                    }
                }
            }
            // Dies holding its lease: never releases; it must expire.
            6 => holding.retain(|h| *h != who),
            _ if (seed >> 40).is_multiple_of(50) => {
                let stored = serde_json::to_string(&gate).expect("serializes");
                gate = serde_json::from_str(&stored).expect("parses");
                gate.forget_holds(now);
            }
            _ => {}
        }
        grants.extend(gate.hand_off(now, &s).into_iter().map(|h| h.holder));
        for who in grants {
            if !holding.contains(&who) {
                holding.push(who);
            }
        }
        let stats = gate.stats(now);
        assert!(stats.in_flight <= 3, "{stats:?}");
        // After a hand-off, no slot is free while a request is held open.
        assert!(stats.in_flight == 3 || stats.held == 0, "{stats:?}");
    }
    // Everyone still waiting is served once the leases come back.
    for who in std::mem::take(&mut holding) {
        gate.release(&who, now);
    }
    let mut rounds = 0;
    loop {
        now += 10;
        let queued: Vec<String> = gate.waiting.iter().map(|w| w.holder.clone()).collect();
        if queued.is_empty() {
            break;
        }
        for who in queued {
            if granted(gate.hold(&who, now, &s, now + 1_000)) {
                gate.release(&who, now);
            }
        }
        for h in gate.hand_off(now, &s) {
            gate.release(&h.holder, now);
        }
        rounds += 1;
        assert!(rounds < 100, "waiters left: {:?}", gate.waiting);
    }
    let stats = gate.stats(now);
    assert!(served > 300, "{served} releases");
    assert!(stats.handed_off > 500 && stats.expired > 50, "{stats:?}");
}
