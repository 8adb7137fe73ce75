use super::*;

fn sub(cid: &str, job: &str, lazy: bool) -> Submission {
    Submission {
        cid: cid.into(),
        job_id: job.into(),
        size_bytes: 10,
        lazy,
        notify_url: None,
    }
}

fn open() -> (tempfile::TempDir, Queue) {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&dir.path().join("queue.db")).expect("open");
    (dir, q)
}

#[test]
fn same_cid_twice_is_one_pin_with_both_job_ids() {
    let (_d, q) = open();
    q.submit(&sub("c1", "j1", true), 1).expect("submit");
    let row = q.submit(&sub("c1", "j2", true), 2).expect("submit");
    assert_eq!(row.job_ids, ["j1", "j2"]);
    assert_eq!(q.list(None, 10).expect("list").len(), 1);
    // Resubmitting the same job id is a no-op; reusing it for another CID is a conflict.
    q.submit(&sub("c1", "j1", true), 3).expect("idempotent");
    let err = q.submit(&sub("c2", "j1", true), 4).unwrap_err();
    assert!(matches!(err, QueueError::JobConflict { .. }), "{err}");
}

#[test]
fn claim_prefers_blocking_then_oldest_and_skips_future_retries() {
    let (_d, q) = open();
    q.submit(&sub("lazy", "a", true), 1).expect("submit");
    q.submit(&sub("wait", "b", false), 2).expect("submit");
    assert_eq!(
        q.claim_due(10).expect("claim").map(|r| r.cid),
        Some("wait".into())
    );
    let lazy = q.claim_due(10).expect("claim").expect("lazy due");
    q.finish(
        &lazy.cid,
        &Finish::Failed {
            reason: "CRITICAL".into(),
            decided_by: "tank-mode".into(),
            retry_at_ms: Some(1_000),
        },
        11,
    )
    .expect("finish");
    assert!(q.claim_due(500).expect("claim").is_none(), "not due yet");
    let again = q.claim_due(1_000).expect("claim").expect("due again");
    assert_eq!(again.failed_rounds, 1);
    assert_eq!(q.next_due_ms().expect("next"), None);
}

#[test]
fn interrupted_pins_resume_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue.db");
    {
        let q = Queue::open(&path).expect("open");
        q.submit(&sub("c1", "j1", true), 1).expect("submit");
        assert!(q.claim_due(5).expect("claim").is_some());
    }
    let q = Queue::open(&path).expect("reopen");
    assert_eq!(
        q.by_job("j1").expect("get").map(|r| r.state),
        Some(State::Queued)
    );
}

#[test]
fn cancel_and_late_finish_do_not_resurrect() {
    let (_d, q) = open();
    q.submit(&sub("c1", "j1", true), 1).expect("submit");
    q.claim_due(2).expect("claim");
    q.cancel("j1", 3).expect("cancel");
    let done = Finish::Pinned {
        confirmed: vec!["primary".into()],
        decided_by: "tank-mode".into(),
    };
    q.finish("c1", &done, 4).expect("finish");
    let row = q.by_cid("c1").expect("get").expect("row");
    assert_eq!(row.state, State::Failed);
    assert_eq!(row.reason.as_deref(), Some("cancelled by operator"));
    // Submitting again re-queues it.
    let row = q.submit(&sub("c1", "j2", true), 5).expect("submit");
    assert_eq!(row.state, State::Queued);
}

fn failed_round(q: &Queue, cid: &str, at: i64) {
    let failed = Finish::Failed {
        reason: "CRITICAL".into(),
        decided_by: "tank-mode".into(),
        retry_at_ms: Some(at + 1_000),
    };
    q.finish(cid, &failed, at).expect("finish");
}

/// Issue 12, item 1: a blocking caller on a CID that lazy jobs want gets the round's answer,
/// and the pin stays queued for the lazy jobs instead of ending `failed` under them.
#[test]
fn a_blocking_submit_never_ends_a_pin_that_lazy_jobs_want() {
    let (_d, q) = open();
    q.submit(&sub("c1", "lazy-A", true), 1).expect("submit");
    q.claim_due(1).expect("claim").expect("due");
    failed_round(&q, "c1", 2); // lazy round 1: queued again at 1002
    let row = q.submit(&sub("c1", "block-B", false), 3).expect("submit");
    assert!(row.lazy, "still lazy: {row:?}");
    // The blocking caller jumps the lazy backoff.
    let claimed = q.claim_due(4).expect("claim").expect("urgent");
    assert!(claimed.lazy);
    failed_round(&q, "c1", 5);
    let row = q.by_cid("c1").expect("get").expect("row");
    assert_eq!(row.state, State::Queued, "{row:?}");
    assert_eq!(row.failed_rounds, 2);
    assert!(
        q.claim_due(6).expect("claim").is_none(),
        "the urgency went with the answered round"
    );
    // A CID with only blocking job ids fails for good, as before.
    q.submit(&sub("c2", "block-C", false), 10).expect("submit");
    q.claim_due(10).expect("claim").expect("due");
    failed_round(&q, "c2", 11);
    assert_eq!(
        q.by_cid("c2").expect("get").expect("row").state,
        State::Failed
    );
}

#[test]
fn cancelling_one_job_id_leaves_the_pin_to_the_others() {
    let (_d, q) = open();
    q.submit(&sub("c1", "a", true), 1).expect("submit");
    q.submit(&sub("c1", "b", false), 2).expect("submit");
    match q.cancel("b", 3).expect("cancel") {
        Cancelled::Detached(row) => {
            assert_eq!(row.state, State::Queued);
            assert_eq!(row.job_ids, ["a"]);
            assert!(row.lazy);
        }
        other => panic!("expected detach, got {other:?}"),
    }
    assert!(q.by_job("b").expect("get").is_none());
    match q.cancel("a", 4).expect("cancel") {
        Cancelled::Pin(row) => assert_eq!(row.state, State::Failed),
        other => panic!("expected the pin cancelled, got {other:?}"),
    }
    assert!(matches!(
        q.cancel("a", 5).expect("cancel"),
        Cancelled::AlreadyEnded(_)
    ));
    assert_eq!(q.cancel("nope", 6).expect("cancel"), Cancelled::NoSuchJob);
}

#[test]
fn a_queue_from_before_the_new_columns_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue.db");
    {
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE pins (cid TEXT PRIMARY KEY, state TEXT NOT NULL, lazy INTEGER NOT NULL,
               size_bytes INTEGER NOT NULL, failed_rounds INTEGER NOT NULL DEFAULT 0,
               next_attempt_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
               updated_at INTEGER NOT NULL, confirmed TEXT NOT NULL DEFAULT '[]', reason TEXT,
               decided_by TEXT) STRICT;
             CREATE TABLE jobs (job_id TEXT PRIMARY KEY, cid TEXT NOT NULL REFERENCES pins(cid)
               ON DELETE CASCADE, created_at INTEGER NOT NULL) STRICT;",
        )
        .expect("old schema");
        conn.execute(
            "INSERT INTO pins VALUES ('c1', ?1, 1, 0, 0, 1, 1, 1, '[]', NULL, NULL)",
            [State::Queued],
        )
        .expect("old pin");
        conn.execute_batch("INSERT INTO jobs VALUES ('old-lazy', 'c1', 1);")
            .expect("old job");
    }
    let q = Queue::open(&path).expect("migrates");
    // The old lazy pin stays lazy when a blocking caller joins it.
    let row = q
        .submit(&sub("c1", "new-blocking", false), 2)
        .expect("submit");
    assert!(row.lazy, "{row:?}");
}

/// Submissions from many threads are group-committed; a conflict in a group fails alone.
#[test]
fn concurrent_submissions_are_committed_together_and_fail_alone() {
    let (_d, q) = open();
    q.submit(&sub("taken", "dup", true), 1).expect("submit");
    let q = std::sync::Arc::new(q);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let q = std::sync::Arc::clone(&q);
            std::thread::spawn(move || {
                let mut conflicts = 0;
                for i in 0..50 {
                    let job = if t == 3 && i == 7 {
                        "dup".to_string()
                    } else {
                        format!("j{t}-{i}")
                    };
                    match q.submit(&sub(&format!("c{t}-{i}"), &job, true), 2) {
                        Ok(_) => {}
                        Err(QueueError::JobConflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                conflicts
            })
        })
        .collect();
    // Meanwhile the worker's connection claims and finishes pins: two writers on one
    // database, which must wait for each other, never fail with "database is locked".
    let worker = {
        let q = std::sync::Arc::clone(&q);
        std::thread::spawn(move || {
            let mut finished = 0;
            for _ in 0..2_000 {
                match q.claim_due(10).expect("claim never fails") {
                    Some(row) => {
                        let done = Finish::Pinned {
                            confirmed: vec!["primary".into()],
                            decided_by: "tank-mode".into(),
                        };
                        q.finish(&row.cid, &done, 11).expect("finish never fails");
                        finished += 1;
                    }
                    None => std::thread::yield_now(),
                }
                if finished >= 100 {
                    break;
                }
            }
            finished
        })
    };
    let conflicts: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert!(worker.join().expect("worker") > 0);
    assert_eq!(conflicts, 1);
    assert_eq!(q.list(None, 1_000).expect("list").len(), 400);
}

/// An acknowledged submission is fsynced: power loss does not take it back. A claim commits
/// without an fsync, and leaves the connection fsyncing every other commit, found or not.
#[test]
fn commits_are_fully_synchronous() {
    let (_d, q) = open();
    let level = || -> i64 {
        q.with(|c| Ok(c.pragma_query_value(None, "synchronous", |r| r.get(0))?))
            .expect("pragma")
    };
    assert_eq!(level(), 2, "FULL");
    q.submit(&sub("bafy-a", "job-a", true), 0).expect("submit");
    let claimed = q.claim_due(10).expect("claim").expect("due");
    assert_eq!(claimed.state, State::Pinning);
    assert_eq!(level(), 2, "FULL after a claim");
    assert!(q.claim_due(10).expect("claim").is_none());
    assert_eq!(level(), 2, "FULL after a claim that found nothing");
    let after = q
        .finish(
            "bafy-a",
            &Finish::Pinned {
                confirmed: vec!["primary".into()],
                decided_by: "tank-mode".into(),
            },
            20,
        )
        .expect("finish")
        .expect("the pin");
    assert_eq!(
        after.state,
        State::Pinned,
        "finish returns the pin as it left it"
    );
    // A claim that fails midway leaves nothing claimed, and the connection at FULL.
    q.submit(&sub("bafy-b", "job-b", true), 30).expect("submit");
    q.with(|c| {
        Ok(c.execute_batch(
            "CREATE TRIGGER no_claims BEFORE UPDATE ON pins BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )?)
    })
    .expect("trigger");
    assert!(q.claim_due(40).is_err(), "the injected failure");
    assert_eq!(level(), 2, "FULL after a failed claim");
    let b = q.by_cid("bafy-b").expect("read").expect("the pin");
    assert_eq!(b.state, State::Queued, "nothing half-claimed");
}

/// Issue 12, item 7: CIDv0 and CIDv1 of the same content are one pin; each job id keeps the
/// form its caller sent.
#[test]
fn cidv0_and_cidv1_of_the_same_content_are_one_pin() {
    let (_d, q) = open();
    let v0 = "QmcRD4wkPPi6dig81r5sLj9Zm1gDCL4zgpEj9CfuRrGbzF";
    let v1 = cid::Cid::try_from(v0)
        .and_then(|c| c.into_v1())
        .expect("v1")
        .to_string();
    q.submit(&sub(v0, "enc-v0", true), 1).expect("submit");
    let row = q.submit(&sub(&v1, "enc-v1", true), 2).expect("submit");
    assert_eq!(row.cid, v0, "pinned as the first caller wrote it");
    assert_eq!(row.job_ids, ["enc-v0", "enc-v1"]);
    assert_eq!(q.list(None, 10).expect("list").len(), 1);
    assert_eq!(
        q.by_cid(&v1).expect("get").map(|r| r.cid).as_deref(),
        Some(v0)
    );
    let seen = q.by_job("enc-v1").expect("get").expect("row");
    assert_eq!(seen.requested_cid.as_deref(), Some(v1.as_str()));
    assert_eq!(
        q.by_job("enc-v0").expect("get").expect("row").requested_cid,
        None
    );
}

/// Writes `sql` to the queue's database behind the queue's back.
fn raw_sql(q: &Queue, sql: &str) {
    q.with(|c| Ok(c.execute_batch(sql)?)).expect("raw SQL");
}

#[test]
fn an_unknown_state_is_an_error_naming_the_row() {
    let (_d, q) = open();
    q.submit(&sub("c1", "j1", true), 1).expect("submit");
    raw_sql(&q, "UPDATE pins SET state = 'done' WHERE cid = 'c1'");
    let err = q.by_job("j1").unwrap_err();
    assert!(matches!(err, QueueError::Corrupt { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "queue row of CID c1 is unreadable: column state holds 'done': not a queue state \
         (queued, pinning, pinned, failed, local-fallback)"
    );
    let listed = q.list(None, 10).unwrap_err().to_string();
    assert!(
        listed.contains("CID c1") && listed.contains("'done'"),
        "{listed}"
    );
}

#[test]
fn bad_confirmed_json_is_an_error_naming_the_row() {
    let (_d, q) = open();
    q.submit(&sub("c1", "j1", true), 1).expect("submit");
    raw_sql(&q, "UPDATE pins SET confirmed = 'primary' WHERE cid = 'c1'");
    let err = q.by_cid("c1").unwrap_err().to_string();
    assert!(
        err.starts_with(
            "queue row of CID c1 is unreadable: column confirmed holds 'primary': \
             not a JSON list of node names: "
        ),
        "{err}"
    );
    // A submission onto the corrupt pin fails the same way instead of guessing.
    let err = q.submit(&sub("c1", "j2", true), 2).unwrap_err().to_string();
    assert!(err.contains("column confirmed holds 'primary'"), "{err}");
}

/// `cancel` reads the pin inside its write transaction: a job id attached while the cancel
/// waits for the write lock is seen, so the pin is detached from, not cancelled under it.
#[test]
fn cancel_sees_a_job_id_attached_while_it_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue.db");
    let q = std::sync::Arc::new(Queue::open(&path).expect("open"));
    q.submit(&sub("c1", "a", true), 1).expect("submit");
    // Another writer holds the lock (as the group-commit writer would for a submission).
    let other = connect(&path).expect("connect");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let cancel = {
        let q = std::sync::Arc::clone(&q);
        std::thread::spawn(move || q.cancel("a", 3))
    };
    // Lets the cancel reach its wait; it decides correctly whenever it gets there.
    std::thread::sleep(std::time::Duration::from_millis(200));
    other
        .execute_batch(
            "INSERT INTO jobs (job_id, cid, created_at, lazy, sent_cid)
             VALUES ('b', 'c1', 2, 0, 'c1');
             COMMIT;",
        )
        .expect("attach b");
    match cancel.join().expect("thread").expect("cancel") {
        Cancelled::Detached(row) => {
            assert_eq!(row.state, State::Queued);
            assert_eq!(row.job_ids, ["b"]);
        }
        other => panic!("expected a detach, got {other:?}"),
    }
}

#[test]
fn counts_and_retention() {
    let (_d, q) = open();
    q.submit(&sub("c1", "j1", true), 1).expect("submit");
    q.submit(&sub("c2", "j2", true), 1).expect("submit");
    q.claim_due(2).expect("claim");
    let done = Finish::Pinned {
        confirmed: vec!["primary".into()],
        decided_by: "tank-mode".into(),
    };
    q.finish("c1", &done, 3).expect("finish");
    let counts = q.counts().expect("counts");
    assert!(counts.contains(&(State::Pinned, 1)) && counts.contains(&(State::Queued, 1)));
    assert_eq!(q.prune_finished(10).expect("prune"), 1);
    assert!(
        q.by_job("j1").expect("get").is_none(),
        "job ids go with the pin"
    );
    assert!(q.by_job("j2").expect("get").is_some());
}

fn notified(cid: &str, job: &str, lazy: bool, url: Option<&str>) -> Submission {
    Submission {
        notify_url: url.map(str::to_string),
        ..sub(cid, job, lazy)
    }
}

fn body(e: &outbox::Outgoing) -> serde_json::Value {
    serde_json::from_str(&e.body).expect("event body is JSON")
}

#[test]
fn a_round_end_writes_an_event_per_job_that_asked_in_its_own_transaction() {
    let (_d, q) = open();
    q.set_notify(true, None);
    q.submit(&notified("c1", "j1", true, Some("http://gw/a")), 1)
        .expect("submit");
    q.submit(&sub("c1", "j2", true), 2).expect("submit");
    let row = q.claim_due(10).expect("claim").expect("due");
    let pinned = Finish::Pinned {
        confirmed: vec!["primary".into()],
        decided_by: "tank-mode".into(),
    };
    q.finish(&row.cid, &pinned, 50).expect("finish");
    // Only j1 asked (no default URL): one event, to its URL, with what the gateway needs.
    let counts = q.event_counts(Some("c1")).expect("counts");
    assert_eq!(
        (counts.pending, counts.delivered, counts.expired),
        (1, 0, 0)
    );
    let e = q.claim_event(60, 1_000).expect("claim").expect("an event");
    assert_eq!(e.url, "http://gw/a");
    let v = body(&e);
    assert_eq!(v["type"], "pinned");
    assert_eq!(v["job_id"], "j1");
    assert_eq!(v["cid"], "c1");
    assert_eq!(v["nodes"], serde_json::json!(["primary"]));
    assert_eq!(v["duration_ms"], 49);
    assert_eq!(v["id"], e.event_id);
    // A second finish of the same round (a late worker) writes nothing more.
    q.finish(&row.cid, &pinned, 70).expect("late finish");
    assert_eq!(q.event_counts(None).expect("counts").pending, 1);
    // With a default URL, a job without its own gets events there.
    q.set_notify_default(Some("http://gw/default".into()));
    q.submit(&sub("c2", "j3", true), 80).expect("submit");
    let row = q.claim_due(90).expect("claim").expect("due");
    q.finish(&row.cid, &pinned, 100).expect("finish");
    let e = q
        .claim_event(110, 1_000)
        .expect("claim")
        .expect("the default's event");
    assert_eq!(
        (e.url.as_str(), body(&e)["job_id"].as_str()),
        ("http://gw/default", Some("j3"))
    );
}

#[test]
fn failed_events_say_whether_the_queue_retries() {
    let (_d, q) = open();
    q.set_notify_default(Some("http://gw/".into()));
    q.submit(&sub("lazy", "l", true), 1).expect("submit");
    q.submit(&sub("wait", "w", false), 1).expect("submit");
    for _ in 0..2 {
        let row = q.claim_due(10).expect("claim").expect("due");
        q.finish(
            &row.cid,
            &Finish::Failed {
                reason: "CRITICAL: no node pinned".into(),
                decided_by: "tank-mode".into(),
                retry_at_ms: Some(5_000),
            },
            20,
        )
        .expect("finish");
    }
    let mut seen = std::collections::BTreeMap::new();
    while let Some(e) = q.claim_event(30, 1_000).expect("claim") {
        let v = body(&e);
        seen.insert(v["job_id"].as_str().unwrap_or_default().to_string(), v);
    }
    assert_eq!(seen["l"]["type"], "failed");
    assert_eq!(seen["l"]["will_retry"], true);
    assert_eq!(seen["l"]["next_attempt_at"], "1970-01-01T00:00:05.000Z");
    assert_eq!(seen["l"]["reason"], "CRITICAL: no node pinned");
    assert_eq!(seen["w"]["will_retry"], false);
    assert!(seen["w"].get("next_attempt_at").is_none(), "{}", seen["w"]);
}

#[test]
fn a_cancel_writes_a_cancelled_event_and_a_late_finish_none() {
    let (_d, q) = open();
    q.set_notify(true, None);
    q.submit(&notified("c1", "j1", true, Some("http://gw/")), 1)
        .expect("submit");
    let row = q.claim_due(5).expect("claim").expect("due");
    q.cancel("j1", 6).expect("cancel");
    q.finish(
        &row.cid,
        &Finish::Pinned {
            confirmed: vec!["primary".into()],
            decided_by: "tank-mode".into(),
        },
        7,
    )
    .expect("late finish");
    let e = q.claim_event(8, 1_000).expect("claim").expect("cancelled");
    assert_eq!(body(&e)["type"], "cancelled");
    assert!(
        q.claim_event(8, 1_000).expect("claim").is_none(),
        "one event only"
    );
}

#[test]
fn a_claimed_event_is_leased_retried_and_expires_but_is_kept() {
    let (_d, q) = open();
    q.set_notify(true, None);
    q.submit(&notified("c1", "j1", true, Some("http://gw/")), 1)
        .expect("submit");
    let row = q.claim_due(5).expect("claim").expect("due");
    let pinned = Finish::Pinned {
        confirmed: vec!["primary".into()],
        decided_by: "tank-mode".into(),
    };
    q.finish(&row.cid, &pinned, 10).expect("finish");
    let first = q.claim_event(10, 1_000).expect("claim").expect("event");
    assert!(
        q.claim_event(500, 1_000).expect("claim").is_none(),
        "leased"
    );
    // The lease runs out (a crash mid-delivery): the same event, same id, same body.
    let again = q.claim_event(1_010, 1_000).expect("claim").expect("again");
    assert_eq!(
        (&again.event_id, &again.body),
        (&first.event_id, &first.body)
    );
    assert!(
        !q.event_failed(&again.event_id, "answered HTTP 500", 1_020, 3_000, 60_000)
            .expect("failed")
    );
    assert!(q.claim_event(2_999, 1_000).expect("claim").is_none());
    let third = q
        .claim_event(3_000, 1_000)
        .expect("claim")
        .expect("retried");
    assert_eq!(third.attempts, 1);
    assert!(
        q.event_failed(&third.event_id, "cannot connect", 60_010, 70_000, 60_000)
            .expect("failed"),
        "older than max age: expired"
    );
    assert!(
        q.claim_event(80_000, 1_000).expect("claim").is_none(),
        "no longer retried"
    );
    let counts = q.event_counts(None).expect("counts");
    assert_eq!((counts.pending, counts.expired), (0, 1));
    assert_eq!(
        q.event_error("c1").expect("error").as_deref(),
        Some("cannot connect")
    );
    // Kept through retention: only delivered events are pruned.
    q.prune_finished(i64::MAX).expect("prune");
    assert_eq!(q.event_counts(None).expect("counts").expired, 1);
}

#[test]
fn delivered_events_are_counted_then_pruned_with_retention() {
    let (_d, q) = open();
    q.set_notify(true, None);
    q.submit(&notified("c1", "j1", true, Some("http://gw/")), 1)
        .expect("submit");
    let row = q.claim_due(5).expect("claim").expect("due");
    q.finish(
        &row.cid,
        &Finish::Pinned {
            confirmed: vec!["primary".into()],
            decided_by: "tank-mode".into(),
        },
        10,
    )
    .expect("finish");
    let e = q.claim_event(10, 1_000).expect("claim").expect("event");
    q.event_delivered(&e.event_id, 20).expect("delivered");
    assert_eq!(q.event_counts(Some("c1")).expect("counts").delivered, 1);
    assert!(q.claim_event(5_000, 1_000).expect("claim").is_none());
    q.prune_finished(30).expect("prune");
    assert_eq!(
        q.event_counts(None).expect("counts"),
        outbox::OutboxCounts::default()
    );
}

#[test]
fn events_are_claimed_and_marked_in_batches() {
    let (_d, q) = open();
    q.set_notify_default(Some("http://gw/".into()));
    for i in 0..5 {
        q.submit(&sub(&format!("c{i}"), &format!("j{i}"), true), 1)
            .expect("submit");
        round_ends(&q, 2, &pinned());
    }
    let batch = q.claim_events(4, 1_000, 3).expect("claim");
    assert_eq!(batch.len(), 3, "at most the limit");
    let rest = q.claim_events(4, 1_000, 10).expect("claim");
    assert_eq!(rest.len(), 2, "the others; the first three are leased");
    let ids: Vec<String> = batch
        .iter()
        .chain(&rest)
        .map(|e| e.event_id.clone())
        .collect();
    q.events_delivered(&ids, 5).expect("marked");
    assert_eq!(q.event_counts(None).expect("counts").delivered, 5);
    assert!(q.claim_events(10_000, 1_000, 10).expect("claim").is_empty());
}

fn pinned() -> Finish {
    Finish::Pinned {
        confirmed: vec!["primary".into()],
        decided_by: "tank-mode".into(),
    }
}

/// The next due pin is claimed at `at` and its round ends with `finish` at `at + 1`.
fn round_ends(q: &Queue, at: i64, finish: &Finish) -> PinRow {
    let row = q.claim_due(at).expect("claim").expect("due");
    q.finish(&row.cid, finish, at + 1).expect("finish");
    row
}

#[test]
fn with_notify_off_a_stored_url_gets_nothing() {
    let (_d, q) = open();
    q.submit(&notified("c1", "j1", true, Some("http://gw/")), 1)
        .expect("submit");
    round_ends(&q, 2, &pinned());
    assert_eq!(
        q.event_counts(None).expect("counts"),
        outbox::OutboxCounts::default()
    );
}

#[test]
fn an_end_and_its_events_commit_together_or_not_at_all() {
    let (_d, q) = open();
    q.set_notify_default(Some("http://gw/".into()));
    q.submit(&sub("c1", "j1", true), 1).expect("submit");
    let row = q.claim_due(2).expect("claim").expect("due");
    // The outbox refuses the event (as a full disk would refuse the write).
    raw_sql(
        &q,
        "CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    );
    assert!(q.finish(&row.cid, &pinned(), 3).is_err());
    let after = q.by_cid("c1").expect("read").expect("row");
    assert_eq!(
        after.state,
        State::Pinning,
        "the end was not recorded without its event"
    );
    raw_sql(&q, "DROP TRIGGER refuse;");
    q.finish(&row.cid, &pinned(), 4).expect("finish");
    assert_eq!(
        q.by_cid("c1").expect("read").expect("row").state,
        State::Pinned
    );
    assert_eq!(q.event_counts(None).expect("counts").pending, 1);
}

#[test]
fn a_job_attached_to_an_ended_pin_is_told_at_once() {
    let (_d, q) = open();
    q.set_notify_default(Some("http://gw/".into()));
    q.submit(&sub("c1", "first", true), 1).expect("submit");
    round_ends(&q, 2, &pinned());
    let first = q
        .claim_event(4, 1_000)
        .expect("claim")
        .expect("first's event");
    q.event_delivered(&first.event_id, 5).expect("delivered");
    // Another job on the same content, after its pin ended: no round will run for it.
    let row = q.submit(&sub("c1", "second", true), 6).expect("submit");
    assert_eq!(row.state, State::Pinned);
    let e = q
        .claim_event(7, 1_000)
        .expect("claim")
        .expect("second's event");
    let v = body(&e);
    assert_eq!(
        (v["type"].as_str(), v["job_id"].as_str()),
        (Some("pinned"), Some("second"))
    );
    assert_eq!(v["nodes"], serde_json::json!(["primary"]));
    // Submitting the same job id again tells nothing new.
    q.submit(&sub("c1", "second", true), 8).expect("again");
    assert!(q.claim_event(9, 1_000).expect("claim").is_none());
}

#[test]
fn a_jobs_events_are_numbered_and_a_cancelled_job_hears_no_more() {
    let (_d, q) = open();
    q.set_notify_default(Some("http://gw/".into()));
    q.submit(&sub("c1", "j1", true), 1).expect("submit");
    let failed = Finish::Failed {
        reason: "CRITICAL".into(),
        decided_by: "tank-mode".into(),
        retry_at_ms: Some(2),
    };
    for at in [2, 3] {
        let row = q.claim_due(at).expect("claim").expect("due");
        q.finish(&row.cid, &failed, at).expect("finish");
    }
    q.cancel("j1", 4).expect("cancel");
    let mut seqs = Vec::new();
    while let Some(e) = q.claim_event(5, 1_000).expect("claim") {
        let v = body(&e);
        seqs.push((
            v["seq"].as_u64().unwrap_or(0),
            v["type"].as_str().unwrap_or("").to_string(),
        ));
    }
    seqs.sort();
    assert_eq!(
        seqs,
        [
            (1, "failed".into()),
            (2, "failed".into()),
            (3, "cancelled".into())
        ]
    );
    // Another job wants the content again and it pins: only that job is told.
    q.submit(&sub("c1", "j2", true), 6).expect("submit");
    round_ends(&q, 7, &pinned());
    let e = q.claim_event(9, 1_000).expect("claim").expect("j2's event");
    assert_eq!(body(&e)["job_id"], "j2");
    assert!(
        q.claim_event(9, 1_000).expect("claim").is_none(),
        "j1 was cancelled"
    );
}

#[test]
fn a_job_attached_to_local_fallback_content_gets_the_journal_line() {
    let (_d, q) = open();
    q.set_notify_default(Some("http://gw/".into()));
    q.submit(&sub("c1", "first", true), 1).expect("submit");
    let entry = crate::journal::Entry::new(
        "c1",
        "first",
        1 << 20,
        crate::journal::ContentKind::Directory,
        3,
        "encoder-1",
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_761_647_400),
    );
    let fallback = Finish::LocalFallback {
        confirmed: vec!["local".into()],
        decided_by: "tank-mode".into(),
        journal: Some(entry.clone()),
    };
    round_ends(&q, 2, &fallback);
    let first = q.claim_event(4, 1_000).expect("claim").expect("first's");
    q.event_delivered(&first.event_id, 5).expect("delivered");
    // A second job on the content after the fallback: told at once, with the line as written.
    q.submit(&sub("c1", "second", true), 6).expect("submit");
    let e = q.claim_event(7, 1_000).expect("claim").expect("second's");
    let v = body(&e);
    assert_eq!(
        (v["type"].as_str(), v["job_id"].as_str()),
        (Some("local-fallback"), Some("second"))
    );
    let told: crate::journal::Entry =
        serde_json::from_value(v["journal"].clone()).expect("a journal record");
    assert_eq!(told, entry);
}
