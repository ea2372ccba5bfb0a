//! The controls a live event needs, against real brokers and roles: a comment taken down on every viewer of
//! every edge in both regions (and never brought back by a resume), bans with their take-down of recent
//! comments and their end, slow mode and who may comment, blocked terms, refusals of viewers and of bad
//! bodies, and viewer counts that add up over edges and regions. How long each control took to reach every
//! viewer and every ingest is printed (p50 and max).

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::regions::{mirror, two_regions_full, two_regions_with};
use support::{percentile, Cluster, Viewer, WAIT};
use tokio::time::Instant;

/// A request to `cluster`'s ingest as `user` with `role` (the trusted gateway's headers).
fn control(
    cluster: &Cluster,
    method: Method,
    path: &str,
    user: &str,
    role: &str,
) -> reqwest::RequestBuilder {
    cluster
        .http
        .request(method, cluster.ingest_url(path))
        .header("x-user-id", user)
        .header("x-user-role", role)
        .timeout(WAIT)
}

/// Sends and returns the status and JSON body.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request to ingest");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Waits for `retract` frames naming `event_id`; how long it took from `since`.
async fn retracted(viewer: &mut Viewer, event_id: &str, since: Instant) -> Duration {
    retracted_all(viewer, &[event_id], since).await
}

/// Waits for `retract` frames naming every one of `event_ids`; how long it took from `since`.
async fn retracted_all(viewer: &mut Viewer, event_ids: &[&str], since: Instant) -> Duration {
    let deadline = Instant::now() + WAIT;
    let mut missing = event_ids.to_vec();
    let mut retracts = Vec::new();
    while !missing.is_empty() {
        let frame = viewer.frame_by(deadline).await.unwrap_or_else(|| {
            panic!("no retract of {missing:?} in time; retracts seen: {retracts:?}")
        });
        if frame["type"] == "retract" {
            retracts.push(frame.clone());
            let named = frame["event_ids"].as_array().cloned().unwrap_or_default();
            missing.retain(|id| !named.iter().any(|n| n == id));
        }
    }
    since.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "p50 X ms, max Y ms" of `samples`.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let max = samples.last().copied().unwrap_or_default();
    format!(
        "p50 {:.0} ms, max {:.0} ms",
        ms(percentile(&samples, 0.5)),
        ms(max)
    )
}

fn id(accepted: &Value) -> String {
    accepted["event_id"].as_str().expect("event_id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_taken_down_leaves_every_viewer_in_both_regions_and_a_resume_never_brings_it_back(
) {
    let (a, b) = two_regions_with(&[]).await;
    let _a_to_b = mirror(&a, &b).await;
    let _b_to_a = mirror(&b, &a).await;
    let stream = "final";
    let mut here = a.viewer(0, stream).await;
    let mut there = b.viewer(0, stream).await;
    // A viewer that will come back with the cursor it has now, after the take-down.
    let away = a.viewer(0, stream).await;
    let cursor = away.hello["cursor"].as_str().expect("cursor").to_owned();
    away.close().await;

    let mut took = Vec::new();
    let mut taken = Vec::new();
    for n in 0..20 {
        let comment = id(&a.comment(stream, "fan", &format!("rude {n}")).await);
        here.events_until(&comment).await;
        there.events_until(&comment).await;
        let path = format!("/v1/streams/{stream}/comments/{comment}");
        let started = Instant::now();
        let (status, body) = send(control(&a, Method::DELETE, &path, "mod", "moderator")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let slowest = retracted(&mut here, &comment, started)
            .await
            .max(retracted(&mut there, &comment, started).await);
        assert!(
            slowest <= Duration::from_secs(1),
            "retract after {slowest:?}"
        );
        took.push(slowest);
        taken.push(comment);
    }
    println!(
        "take-down to every viewer (2 edges, 2 regions, 20 tries): {}",
        summary(took)
    );

    // Twice is once: the same take-down again is accepted and changes nothing.
    let again = format!("/v1/streams/{stream}/comments/{}", taken[0]);
    let (status, _) = send(control(&a, Method::DELETE, &again, "mod", "moderator")).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let after = id(&a.comment(stream, "fan", "after the take-downs").await);
    let url = format!("{}?cursor={cursor}", a.viewer_url(0, stream));
    let mut back = Viewer::connect(&url).await;
    assert_eq!(back.hello["resumed"], true, "{}", back.hello);
    let missed = back.events_until(&after).await;
    let ids: Vec<&str> = missed
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    for comment in &taken {
        assert!(
            !ids.contains(&comment.as_str()),
            "{comment} came back: {ids:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_takes_the_users_recent_comments_down_everywhere_refuses_them_in_both_regions_and_ends(
) {
    let (a, b) = two_regions_with(&[]).await;
    let _a_to_b = mirror(&a, &b).await;
    let _b_to_a = mirror(&b, &a).await;
    let stream = "final";
    let mut here = a.viewer(0, stream).await;
    let mut there = b.viewer(0, stream).await;
    let spam = [
        id(&a.comment(stream, "troll", "spam one").await),
        id(&b.comment(stream, "troll", "spam two").await),
    ];
    let fine = id(&a.comment(stream, "fan", "a fine comment").await);
    for viewer in [&mut here, &mut there] {
        seen_all(viewer, &[&spam[0], &spam[1], &fine]).await;
    }
    let path = format!("/v1/streams/{stream}/bans/troll");
    let started = Instant::now();
    let ban = control(&a, Method::PUT, &path, "mod", "moderator")
        .json(&json!({"duration_s": 5, "reason": "spam", "retract_recent_s": 60}));
    let (status, body) = send(ban).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["until_ms"].as_i64().is_some(), "{body}");
    for viewer in [&mut here, &mut there] {
        let after = retracted_all(viewer, &[&spam[0], &spam[1]], started).await;
        assert!(
            after <= Duration::from_secs(1),
            "{spam:?} retracted after {after:?}"
        );
    }
    // Refused in both regions within a second of the ban.
    for (region, cluster) in [("a", &a), ("b", &b)] {
        let refused =
            refused_within(cluster, stream, "troll", Duration::from_secs(1), started).await;
        let body = refused.unwrap_or_else(|| panic!("troll still posts in {region}"));
        assert_eq!(body["rule"], "banned", "{body}");
        assert!(body["until_ms"].as_i64().is_some(), "{body}");
    }
    // The fan's comment stayed: a later one still arrives after it.
    let later = id(&a.comment(stream, "fan", "still here").await);
    here.events_until(&later).await;
    // After 5 s the ban is over in both regions.
    tokio::time::sleep_until(started + Duration::from_secs(5)).await;
    for cluster in [&a, &b] {
        let sorry = || comment_to(cluster, stream, "troll", "viewer", "sorry");
        let accepted = |status| status == StatusCode::ACCEPTED;
        let answer = answered(sorry, accepted, Instant::now(), Duration::from_secs(2)).await;
        answer.expect("troll still refused after the ban's end");
    }
    ban_timings(&a, &b, stream).await;
    settings_timings(&a, &b, "settings-timed").await;
    a.stop().await;
    b.stop().await;
}

/// Reads until every one of `ids` arrived.
async fn seen_all(viewer: &mut Viewer, ids: &[&str]) {
    let mut missing: Vec<&str> = ids.to_vec();
    while let Some(last) = missing.last().copied() {
        let seen = viewer.events_until(last).await;
        missing.retain(|id| !seen.iter().any(|e| e["event_id"] == *id));
    }
}

/// Sends what `request` makes, every 20 ms, until the answer's status is `done` (its body), or `within` of
/// `since` has passed (`None`).
async fn answered(
    request: impl Fn() -> reqwest::RequestBuilder,
    done: impl Fn(StatusCode) -> bool,
    since: Instant,
    within: Duration,
) -> Option<Value> {
    while since.elapsed() <= within {
        let (status, body) = send(request()).await;
        if done(status) {
            return Some(body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Polls `cluster`'s ingest with `user`'s likes until one is refused (its problem body), for `within` of
/// `since`.
async fn refused_within(
    cluster: &Cluster,
    stream: &str,
    user: &str,
    within: Duration,
    since: Instant,
) -> Option<Value> {
    let likes = format!("/v1/streams/{stream}/likes");
    let like = || control(cluster, Method::POST, &likes, user, "viewer");
    answered(
        like,
        |status| status == StatusCode::FORBIDDEN,
        since,
        within,
    )
    .await
}

/// 20 bans and lifts in region a: how long until region b's ingest refuses, then accepts again.
async fn ban_timings(a: &Cluster, b: &Cluster, stream: &str) {
    let (mut bans, mut lifts) = (Vec::new(), Vec::new());
    let likes = format!("/v1/streams/{stream}/likes");
    for n in 0..20 {
        let user = format!("u{n}");
        let path = format!("/v1/streams/{stream}/bans/{user}");
        let started = Instant::now();
        let (status, _) = send(control(a, Method::PUT, &path, "mod", "moderator")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        refused_within(b, stream, &user, WAIT, started)
            .await
            .expect("refused in b");
        bans.push(started.elapsed());
        let started = Instant::now();
        let (status, _) = send(control(a, Method::DELETE, &path, "mod", "moderator")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let like = || control(b, Method::POST, &likes, &user, "viewer");
        let accepted = |status| status == StatusCode::ACCEPTED;
        answered(like, accepted, started, WAIT)
            .await
            .expect("ban not lifted in b");
        lifts.push(started.elapsed());
    }
    println!(
        "ban in region a to refused by region b's ingest (20 tries): {}",
        summary(bans)
    );
    println!(
        "lift in region a to accepted by region b's ingest (20 tries): {}",
        summary(lifts)
    );
}

/// 20 closings and openings of a stream's comments in region a: how long until region b's ingest refuses
/// a comment, then takes one again.
async fn settings_timings(a: &Cluster, b: &Cluster, stream: &str) {
    let path = format!("/v1/streams/{stream}/settings");
    let (mut closings, mut openings) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        for (comments, took, accepted) in [
            ("closed", &mut closings, false),
            ("open", &mut openings, true),
        ] {
            let started = Instant::now();
            let put = control(a, Method::PUT, &path, "owner", "owner")
                .json(&json!({ "comments": comments }));
            assert_eq!(send(put).await.0, StatusCode::ACCEPTED);
            let hi = || comment_to(b, stream, "v", "viewer", "hi");
            let applied = |status| (status == StatusCode::ACCEPTED) == accepted;
            let answer = answered(hi, applied, started, WAIT).await;
            answer.unwrap_or_else(|| panic!("{comments} not applied in b"));
            took.push(started.elapsed());
        }
    }
    println!(
        "comments closed in region a to refused by region b's ingest (20 tries): {}",
        summary(closings)
    );
    println!(
        "comments opened in region a to accepted by region b's ingest (20 tries): {}",
        summary(openings)
    );
}

fn comment_to(
    cluster: &Cluster,
    stream: &str,
    user: &str,
    role: &str,
    text: &str,
) -> reqwest::RequestBuilder {
    control(
        cluster,
        Method::POST,
        &format!("/v1/streams/{stream}/comments"),
        user,
        role,
    )
    .json(&json!({ "text": text }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_mode_who_may_comment_and_blocked_terms_refuse_whom_they_should() {
    let cluster = Cluster::start(1, 1).await;
    let s = "chat";
    let settings = |body: Value| {
        control(
            &cluster,
            Method::PUT,
            &format!("/v1/streams/{s}/settings"),
            "owner",
            "owner",
        )
        .json(&body)
    };
    let (status, body) = send(settings(
        json!({"slow_mode_s": 2, "blocked_terms": ["Free Tickets"]}),
    ))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let (status, _) = send(comment_to(&cluster, s, "v", "viewer", "first")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let response = comment_to(&cluster, s, "v", "viewer", "second")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: Value = response.json().await.expect("problem");
    assert_eq!(body["rule"], "slow_mode", "{body}");
    for n in 0..3 {
        let (status, body) = send(comment_to(
            &cluster,
            s,
            "m",
            "moderator",
            &format!("mod {n}"),
        ))
        .await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "moderators are exempt: {body}"
        );
    }
    let (status, body) = send(comment_to(
        &cluster,
        s,
        "w",
        "viewer",
        "get ＦＲＥＥ tickets now",
    ))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["rule"], "blocked_term");
    assert!(
        !body.to_string().to_lowercase().contains("tickets"),
        "never the term: {body}"
    );

    let (status, _) = send(settings(json!({"comments": "moderators"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = send(comment_to(&cluster, s, "x", "viewer", "hello")).await;
    assert_eq!(
        (status, &body["rule"]),
        (StatusCode::FORBIDDEN, &json!("moderators_only")),
        "{body}"
    );
    let (status, _) = send(comment_to(&cluster, s, "m", "moderator", "only us")).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let (status, _) = send(settings(json!({"comments": "closed"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for role in ["viewer", "moderator", "owner"] {
        let (status, body) = send(comment_to(&cluster, s, "y", role, "hello")).await;
        assert_eq!(
            (status, &body["rule"]),
            (StatusCode::FORBIDDEN, &json!("comments_closed")),
            "{role}"
        );
    }
    cluster.like(s, "y").await;

    let (status, body) = send(control(
        &cluster,
        Method::GET,
        &format!("/v1/streams/{s}/settings"),
        "m",
        "moderator",
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"stream_id": s, "slow_mode_s": 0, "comments": "closed", "blocked_terms": []})
    );
    let standing = cluster
        .http
        .get(cluster.ingest_url(&format!("/v1/streams/{s}")))
        .send()
        .await
        .expect("get");
    assert_eq!(standing.status(), StatusCode::OK);
    let standing: Value = standing.json().await.expect("json");
    assert_eq!(standing["settings"]["comments"], "closed", "{standing}");
    assert!(
        standing["settings"].get("blocked_terms").is_none(),
        "{standing}"
    );
    assert!(
        standing["viewers"].is_u64() && standing["likes_total"].is_u64(),
        "{standing}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_refused_every_control_and_bad_bodies_are_told_what_is_wrong() {
    let cluster = Cluster::start(1, 1).await;
    let s = "chat";
    let controls = [
        (
            Method::DELETE,
            format!("/v1/streams/{s}/comments/some-event"),
        ),
        (Method::PUT, format!("/v1/streams/{s}/bans/u1")),
        (Method::DELETE, format!("/v1/streams/{s}/bans/u1")),
        (Method::PUT, format!("/v1/streams/{s}/settings")),
        (Method::GET, format!("/v1/streams/{s}/settings")),
        (Method::PUT, "/v1/bans/u1".to_owned()),
        (Method::DELETE, "/v1/bans/u1".to_owned()),
    ];
    for (method, path) in &controls {
        let (status, body) = send(control(&cluster, method.clone(), path, "v", "viewer")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["type"], "urn:chorus:problem:forbidden", "{body}");
    }
    // A stream's owner is no platform administrator.
    let (status, _) = send(control(&cluster, Method::PUT, "/v1/bans/u1", "o", "owner")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = send(control(
        &cluster,
        Method::PUT,
        "/v1/bans/u1",
        "root",
        "admin",
    ))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["stream_id"], Value::Null);

    let ban = format!("/v1/streams/{s}/bans/u2");
    let bad = control(&cluster, Method::PUT, &ban, "m", "moderator")
        .header("content-type", "application/json")
        .body("{not json");
    let (status, body) = send(bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for (body, field) in [
        (json!({"duration_s": 0}), "duration_s"),
        (json!({"retract_recent_s": 100000}), "retract_recent_s"),
        (json!({"reason": "x".repeat(501)}), "reason"),
        (json!({"duration": 10}), "body"),
    ] {
        let (status, answer) =
            send(control(&cluster, Method::PUT, &ban, "m", "moderator").json(&body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let settings = format!("/v1/streams/{s}/settings");
    for body in [
        json!({"slow_mode_s": 100000}),
        json!({"comments": "some"}),
        json!({"blocked_terms": "x"}),
    ] {
        let (status, answer) =
            send(control(&cluster, Method::PUT, &settings, "o", "owner").json(&body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_counts_add_up_over_edges_and_regions() {
    let (a, b) = two_regions_full(2, &[], &[]).await;
    let _a_to_b = mirror(&a, &b).await;
    let _b_to_a = mirror(&b, &a).await;
    // The mirrors copy both ways before anything is timed.
    for (from, to) in [(&a, &b), (&b, &a)] {
        let mut watching = to.viewer(0, "warm-up").await;
        let crossed = id(&from.comment("warm-up", "u", "across").await);
        watching.events_until(&crossed).await;
    }
    let stream = "counted";
    let mut viewers = vec![a.viewer(0, stream).await, a.viewer(1, stream).await];
    viewers.push(b.viewer(0, stream).await);
    let started = Instant::now();
    let within =
        |since: Instant| (since + Duration::from_secs(2)).saturating_duration_since(Instant::now());
    for (n, viewer) in viewers.iter_mut().enumerate() {
        let seen = viewer.wait_viewers(3, within(started)).await;
        println!("viewer {n}: count 3 after {:.0} ms", ms(started.elapsed()));
        assert!(seen, "viewer {n} sees {:?}", viewer.viewers);
    }
    let joined = started.elapsed();
    let leaving = viewers.remove(1);
    let left_at = Instant::now();
    leaving.close().await;
    for (n, viewer) in viewers.iter_mut().enumerate() {
        assert!(
            viewer.wait_viewers(2, within(left_at)).await,
            "viewer {n} sees {:?}",
            viewer.viewers
        );
    }
    let left = left_at.elapsed();
    println!(
        "viewer counts: the third join seen everywhere after {:.0} ms, a leave after {:.0} ms",
        ms(joined),
        ms(left)
    );
    let late = b.viewer(0, stream).await;
    assert!(late.hello["viewers"].as_u64().is_some(), "{}", late.hello);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_viewers_joining_and_leaving_for_30_s_end_with_the_exact_count_everywhere() {
    let flags = [
        "--max-connections-per-address=4000",
        "--max-pending-per-address=4000",
    ];
    let cluster = Cluster::start_with(2, 1, &flags).await;
    let urls = [cluster.viewer_url(0, "busy"), cluster.viewer_url(1, "busy")];
    let churn_until = Instant::now() + Duration::from_secs(30);
    let churners: Vec<_> = (0..1000u64)
        .map(|n| tokio::spawn(churn(urls.clone(), n, churn_until)))
        .collect();
    let mut staying = Vec::new();
    for churner in churners {
        if let Some(viewer) = churner.await.expect("churner") {
            staying.push(viewer);
        }
    }
    let count = staying.len() as u64;
    assert!(count > 300 && count < 700, "about half stay: {count}");
    let settled = Instant::now();
    let waits = staying.into_iter().map(|mut viewer| {
        tokio::spawn(async move {
            (
                viewer.wait_viewers(count, Duration::from_secs(15)).await,
                viewer.viewers,
                viewer,
            )
        })
    });
    let mut wrong = Vec::new();
    let mut viewers = Vec::new();
    for wait in waits {
        let (exact, seen, viewer) = wait.await.expect("wait");
        if !exact {
            wrong.push(seen);
        }
        viewers.push(viewer);
    }
    assert!(
        wrong.is_empty(),
        "{} of {count} viewers do not show {count}: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    println!(
        "1,000 viewers churning for 30 s: all {count} left show {count} {:.0} ms after the churn",
        ms(settled.elapsed())
    );
    for viewer in viewers {
        viewer.close().await;
    }
    cluster.stop().await;
}

/// One viewer coming and going on either edge until `until` (a pseudo-random stay of 0.5 to 4 s each time,
/// from `seed`); about half of them end connected: those are returned.
async fn churn(urls: [String; 2], seed: u64, until: Instant) -> Option<Viewer> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    tokio::time::sleep(Duration::from_millis(next() % 2000)).await;
    loop {
        let mut viewer = Viewer::connect(&urls[(next() % 2) as usize]).await;
        let stay = Duration::from_millis(500 + next() % 3500);
        let leave_at = (Instant::now() + stay).min(until);
        while viewer.frame_by(leave_at).await.is_some() {}
        if Instant::now() >= until {
            if next() % 2 == 0 {
                return Some(viewer);
            }
            viewer.close().await;
            return None;
        }
        viewer.close().await;
    }
}
