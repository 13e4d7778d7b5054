//! The coalesced list reads (`[list_apis]`): `openim/query_online_status` and
//! `im_open_login_svc/account_check`, judged by the sim. Many concurrent callers with
//! overlapping ids cost few upstream calls, none over the API's maximum, and each caller's
//! answer equals (as JSON) what the sim answers that caller's own request; a request Tencent
//! would refuse is refused locally with Tencent's code, and never fails another caller; with
//! `ttl_ms` each id is kept that long, per-id failures never; a `State.StateChange` callback
//! drops a cached status at once; the API's own limit holds under load.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fleet::max_in_any_second;
use support::{Caller, TestGateway};
use tim_gateway::apis::{
    ListSpec, ACCOUNT_CHECK, GET_GROUP_INFO, GET_GROUP_MEMBERS, QUERY_ONLINE_STATUS,
};
use tim_gateway::config::Config;

const ONLINE: &ListSpec = &QUERY_ONLINE_STATUS;
const CHECK: &ListSpec = &ACCOUNT_CHECK;
const GROUPS: &ListSpec = &GET_GROUP_INFO;
const MEMBERS: &ListSpec = &GET_GROUP_MEMBERS;

/// `config` with `[list_apis."<label>"]` set as an operator writes it.
fn with_list_api(config: &mut Config, spec: &ListSpec, ttl_ms: u64) {
    let toml = format!(
        "[list_apis.\"{}\"]\nenabled = true\nttl_ms = {ttl_ms}\n",
        spec.label
    );
    let env: HashMap<String, String> = HashMap::new();
    let parsed = Config::from_toml_str(&toml, &env).expect("valid list_apis section");
    config.list_apis.by_label.extend(parsed.list_apis.by_label);
}

async fn gateway(spec: &ListSpec, ttl_ms: u64, tweak: impl FnOnce(&mut Config)) -> TestGateway {
    builder(spec, ttl_ms, tweak).start().await
}

fn builder(
    spec: &ListSpec,
    ttl_ms: u64,
    tweak: impl FnOnce(&mut Config),
) -> support::GatewayBuilder {
    TestGateway::builder().config(|config| {
        with_list_api(config, spec, ttl_ms);
        tweak(config);
    })
}

/// A request of `spec` for `ids`, with options `flag`: query_online_status' IsNeedDetail,
/// get_group_info's ResponseFilter, get_specified_group_member_info's group (group1 or group2).
fn body(spec: &ListSpec, ids: &[String], flag: u8) -> Value {
    match spec.label {
        "openim/query_online_status" => json!({"To_Account": ids, "IsNeedDetail": flag}),
        "im_open_login_svc/account_check" => {
            let items: Vec<Value> = ids.iter().map(|id| json!({"UserID": id})).collect();
            json!({ "CheckItem": items })
        }
        "group_open_http_svc/get_group_info" => match flag {
            0 => json!({ "GroupIdList": ids }),
            _ => json!({
                "GroupIdList": ids,
                "ResponseFilter": {"GroupBaseInfoFilter": ["Name", "MemberNum"]}
            }),
        },
        _ => json!({
            "GroupId": format!("group{}", 1 + flag),
            "Member_List_Account": ids,
            "MemberInfoFilter": ["Role", "NameCard"]
        }),
    }
}

/// The sim's ids of `spec`, existing or not, and some failing at the sim (n % 97 == 13).
fn id_of(spec: &ListSpec, n: usize) -> String {
    let (kind, missing) = match spec.label {
        "group_open_http_svc/get_group_info" => ("group", "nogroup"),
        // group1's members are user10..user12, group2's user20..user23.
        "group_open_http_svc/get_specified_group_member_info" => return format!("user{}", n % 30),
        _ => ("user", "nobody"),
    };
    match n % 11 {
        10 => format!("{missing}{n}"),
        _ => format!("{kind}{n}"),
    }
}

fn id(n: usize) -> String {
    id_of(ONLINE, n)
}

fn calls_of(gw: &TestGateway, spec: &ListSpec) -> Vec<tim_gateway::sim::SimCall> {
    gw.sim
        .calls()
        .into_iter()
        .filter(|c| c.path == spec.path)
        .collect()
}

async fn many_callers_share_few_calls_and_each_gets_its_own_answer(spec: &'static ListSpec) {
    let gw = gateway(spec, 0, |_| {}).await;
    // Slow enough that the callers overlap.
    gw.sim.set_latency(Duration::from_millis(30));
    let requests: Vec<Value> = (0..60)
        .map(|caller| {
            let ids: Vec<String> = (0..20)
                .map(|k| id_of(spec, (caller * 7 + k * 3) % 150))
                .collect();
            body(spec, &ids, (caller % 2) as u8)
        })
        .collect();
    let caller = Caller::new(gw.addr);
    let answers = futures_util::future::join_all(requests.iter().map(|request| {
        let caller = caller.clone();
        async move { caller.post(spec.path, request).await }
    }))
    .await;
    let calls = calls_of(&gw, spec);
    assert!(
        calls.len() <= 20,
        "{} upstream calls for 60 callers",
        calls.len()
    );
    eprintln!(
        "{}: {} upstream calls for 60 callers",
        spec.label,
        calls.len()
    );
    for call in &calls {
        assert!(call.accounts.len() <= spec.max_ids, "{call:?}");
        assert!(!call.accounts.is_empty());
    }
    gw.sim.set_latency(Duration::ZERO);
    let direct = Caller::new(gw.sim.addr());
    for (request, answer) in requests.iter().zip(&answers) {
        let alone = direct.post(spec.path, request).await;
        assert_eq!(answer, &alone, "the gateway's answer to {request}");
    }
    let metrics = gw.metrics().await;
    let sent = support::metric_value(
        &metrics,
        &format!("tim_gateway_list_call_ids_sum{{api=\"{}\"}}", spec.label),
    )
    .expect("ids per call are counted");
    let sent_ids: usize = calls.iter().map(|c| c.accounts.len()).sum();
    assert_eq!(
        sent as usize, sent_ids,
        "list_call_ids counts what was sent"
    );
    let joined = support::metric_value(
        &metrics,
        &format!(
            "tim_gateway_list_ids_total{{api=\"{}\",source=\"joined\"}}",
            spec.label
        ),
    )
    .unwrap_or(0.0);
    assert!(
        joined > 0.0,
        "overlapping callers joined flights:\n{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_status_callers_share_calls_and_get_their_own_answers() {
    many_callers_share_few_calls_and_each_gets_its_own_answer(ONLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_check_callers_share_calls_and_get_their_own_answers() {
    many_callers_share_few_calls_and_each_gets_its_own_answer(CHECK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_info_callers_share_calls_and_get_their_own_answers() {
    many_callers_share_few_calls_and_each_gets_its_own_answer(GROUPS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_member_callers_share_calls_and_get_their_own_answers() {
    many_callers_share_few_calls_and_each_gets_its_own_answer(MEMBERS).await;
}

async fn a_request_over_the_maximum_is_refused_locally_and_fails_no_one_else(
    spec: &'static ListSpec,
) {
    let gw = gateway(spec, 0, |_| {}).await;
    gw.sim.set_latency(Duration::from_millis(50));
    let too_many: Vec<String> = (0..=spec.max_ids).map(|n| format!("user{n}")).collect();
    let bad = body(spec, &too_many, 0);
    let good = body(spec, &[id(1), id(2)], 0);
    let caller = Caller::new(gw.addr);
    let (refused, answered) = tokio::join!(caller.post(spec.path, &bad), async {
        caller.post(spec.path, &good).await
    });
    let sim_says = Caller::new(gw.sim.addr()).post(spec.path, &bad).await;
    assert_eq!(refused["ActionStatus"], "FAIL", "{refused}");
    assert_eq!(
        refused["ErrorCode"], sim_says["ErrorCode"],
        "{refused} vs {sim_says}"
    );
    assert_eq!(answered["ActionStatus"], "OK", "{answered}");
    let sent: Vec<_> = calls_of(&gw, spec)
        .into_iter()
        .filter(|c| c.accounts.len() > spec.max_ids)
        .collect();
    assert_eq!(
        sent.len(),
        1,
        "only the test's own direct call is over the maximum"
    );
    for malformed in [
        json!({}),
        json!([1]),
        json!({"To_Account": "user1", "CheckItem": 3}),
    ] {
        let answer = caller.post(spec.path, &malformed).await;
        let alone = Caller::new(gw.sim.addr()).post(spec.path, &malformed).await;
        assert_eq!(
            answer["ErrorCode"], alone["ErrorCode"],
            "{malformed}: {answer}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_status_over_500_ids_is_refused_locally() {
    a_request_over_the_maximum_is_refused_locally_and_fails_no_one_else(ONLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_check_over_100_ids_is_refused_locally() {
    a_request_over_the_maximum_is_refused_locally_and_fails_no_one_else(CHECK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reads_over_50_ids_are_refused_locally() {
    a_request_over_the_maximum_is_refused_locally_and_fails_no_one_else(GROUPS).await;
    a_request_over_the_maximum_is_refused_locally_and_fails_no_one_else(MEMBERS).await;
}

/// A group read's own checks, each equal to the sim's: filters, an empty or missing GroupId.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_group_reads_get_the_sims_codes() {
    let gw = gateway(GROUPS, 0, |config| with_list_api(config, MEMBERS, 0)).await;
    let direct = Caller::new(gw.sim.addr());
    let cases = [
        (
            GROUPS,
            json!({"GroupIdList": ["group1"], "ResponseFilter": []}),
        ),
        (
            GROUPS,
            json!({"GroupIdList": ["group1"], "ResponseFilter": {"MemberInfoFilter": "Role"}}),
        ),
        (
            GROUPS,
            json!({"GroupIdList": ["group1"], "ResponseFilter": {"Other": 1}}),
        ),
        (MEMBERS, json!({"Member_List_Account": ["user10"]})),
        (MEMBERS, json!({"GroupId": "", "Member_List_Account": []})),
        (
            MEMBERS,
            json!({"GroupId": 7, "Member_List_Account": ["user10"]}),
        ),
        (
            MEMBERS,
            json!({"GroupId": "group1", "Member_List_Account": ["user10"], "MemberRoleFilter": [1]}),
        ),
        (
            MEMBERS,
            json!({"GroupId": "group99999", "Member_List_Account": ["user10"]}),
        ),
        (
            MEMBERS,
            json!({"GroupId": "group1", "Member_List_Account": ["user10", "user99"]}),
        ),
    ];
    for (spec, request) in cases {
        let answer = gw.post(spec.path, &request).await;
        let alone = direct.post(spec.path, &request).await;
        match alone["ActionStatus"] == "OK" {
            true => assert_eq!(answer, alone, "{request}"),
            // A refusal's words are the refuser's own; its code is Tencent's.
            false => assert_eq!(
                (&answer["ActionStatus"], &answer["ErrorCode"]),
                (&alone["ActionStatus"], &alone["ErrorCode"]),
                "{request}: {answer} vs {alone}"
            ),
        }
    }
    gw.shutdown().await;
}

/// Tencent's group callbacks drop what they change: the group's info, the members named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_callbacks_drop_the_cached_group_and_members() {
    let gw = gateway(GROUPS, 600_000, |config| {
        with_list_api(config, MEMBERS, 600_000)
    })
    .await;
    let info =
        json!({"GroupIdList": ["group1"], "ResponseFilter": {"GroupBaseInfoFilter": ["Name"]}});
    let name = |answer: &Value| answer["GroupInfo"][0]["Name"].clone();
    assert_eq!(name(&gw.post(GROUPS.path, &info).await), "group-1");
    assert!(gw.sim.set_group_name("group1", "renamed"));
    assert_eq!(name(&gw.post(GROUPS.path, &info).await), "group-1", "kept");
    let sender = gw.callback_sender();
    let changed = json!({"CallbackCommand": "Group.CallbackAfterGroupInfoChanged",
        "GroupId": "group1", "Operator_Account": "user10", "Name": "renamed"});
    let (status, _) = sender
        .send("Group.CallbackAfterGroupInfoChanged", changed.to_string())
        .await
        .expect("answered");
    assert_eq!(status, 200);
    assert_eq!(name(&gw.post(GROUPS.path, &info).await), "renamed");

    let members = json!({"GroupId": "group1", "Member_List_Account": ["user10", "user11"]});
    let first = gw.post(MEMBERS.path, &members).await;
    let calls = calls_of(&gw, MEMBERS).len();
    assert_eq!(gw.post(MEMBERS.path, &members).await, first);
    assert_eq!(calls_of(&gw, MEMBERS).len(), calls, "members kept");
    let exited = json!({"CallbackCommand": "Group.CallbackAfterMemberExit", "GroupId": "group1",
        "ExitType": "Kicked", "ExitMemberList": [{"Member_Account": "user11"}]});
    sender
        .send("Group.CallbackAfterMemberExit", exited.to_string())
        .await
        .expect("answered");
    gw.post(MEMBERS.path, &members).await;
    let refetched = calls_of(&gw, MEMBERS);
    assert_eq!(
        refetched.len(),
        calls + 1,
        "the member that left was fetched again"
    );
    assert_eq!(
        refetched.last().map(|c| c.accounts.clone()),
        Some(vec!["user11".to_owned()])
    );
    let destroyed =
        json!({"CallbackCommand": "Group.CallbackAfterGroupDestroyed", "GroupId": "group1"});
    sender
        .send("Group.CallbackAfterGroupDestroyed", destroyed.to_string())
        .await
        .expect("answered");
    gw.post(MEMBERS.path, &members).await;
    assert_eq!(
        calls_of(&gw, MEMBERS).len(),
        calls + 2,
        "a destroyed group's members are void"
    );
    let handled = gw
        .metric(r#"tim_gateway_callbacks_total{command="group_change",result="handled"}"#)
        .await;
    assert_eq!(handled, Some(3.0));
    gw.shutdown().await;
}

async fn answers_are_kept_for_the_ttl_and_failures_never(spec: &'static ListSpec) {
    let gw = gateway(spec, 400, |_| {}).await;
    let fine = body(spec, &["user1".into(), "user2".into()], 1);
    let first = gw.post(spec.path, &fine).await;
    assert_eq!(first["ActionStatus"], "OK", "{first}");
    assert_eq!(calls_of(&gw, spec).len(), 1);
    assert_eq!(
        gw.post(spec.path, &fine).await,
        first,
        "answered from the cache"
    );
    assert_eq!(calls_of(&gw, spec).len(), 1, "kept for the TTL");
    // user13 fails at the sim (n % 97 == 13): answered, never kept.
    let failing = body(spec, &["user13".into()], 1);
    let once = gw.post(spec.path, &failing).await;
    let twice = gw.post(spec.path, &failing).await;
    assert_eq!(once, twice);
    assert_eq!(
        calls_of(&gw, spec).len(),
        3,
        "a per-id failure is not cached"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.post(spec.path, &fine).await, first);
    assert_eq!(calls_of(&gw, spec).len(), 4, "fetched again once expired");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_status_is_kept_for_its_ttl_and_failures_never() {
    answers_are_kept_for_the_ttl_and_failures_never(ONLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_checks_are_kept_for_their_ttl_and_failures_never() {
    answers_are_kept_for_the_ttl_and_failures_never(CHECK).await;
}

fn status_of(answer: &Value) -> Value {
    answer["QueryResult"][0]["Status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_callback_from_tencent_drops_a_cached_status_at_once() {
    let gw = builder(ONLINE, 600_000, |_| {})
        .sim_calls_back()
        .start()
        .await;
    let ask = body(ONLINE, &["user3".into()], 0);
    assert_eq!(status_of(&gw.post(ONLINE.path, &ask).await), "Online");
    // Changed at Tencent: the sim sends State.StateChange to the gateway before it returns.
    let sent = gw.sim.set_online_status("user3", "Offline").await;
    let (status, _) = sent.expect("status set").expect("callback sent");
    assert_eq!(status, 200);
    assert_eq!(
        status_of(&gw.post(ONLINE.path, &ask).await),
        "Offline",
        "the callback dropped the cached status"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_is_kept_until_a_signed_state_change_names_it() {
    let gw = gateway(ONLINE, 600_000, |config| {
        config.callback.token = Some(tim_gateway::config::SecretKey::new("cb-token".into()));
    })
    .await;
    let ask = body(ONLINE, &["user3".into(), "user6".into()], 0);
    assert_eq!(status_of(&gw.post(ONLINE.path, &ask).await), "Online");
    // This sim has nowhere to call back: the change is silent.
    gw.sim
        .set_online_status("user3", "PushOnline")
        .await
        .expect("set");
    assert_eq!(
        status_of(&gw.post(ONLINE.path, &ask).await),
        "Online",
        "kept"
    );
    let callback = tim_gateway::sim::state_change_callback("user3", "Disconnect", "LinkClose");
    let command = tim_gateway::sim::STATE_CHANGE_COMMAND;
    let unsigned = tim_gateway::sim::CallbackSender::try_new(
        support::SDKAPPID,
        Some("wrong-token".into()),
        &format!("http://{}/tim/callback", gw.addr),
    )
    .expect("sender");
    unsigned
        .send(command, callback.clone())
        .await
        .expect("answered");
    assert_eq!(
        status_of(&gw.post(ONLINE.path, &ask).await),
        "Online",
        "a callback with a wrong Sign drops nothing"
    );
    let (status, _) = gw
        .callback_sender()
        .send(command, callback)
        .await
        .expect("callback answered");
    assert_eq!(status, 200);
    let answer = gw.post(ONLINE.path, &ask).await;
    assert_eq!(status_of(&answer), "PushOnline", "{answer}");
    assert_eq!(
        answer["QueryResult"][1]["Status"], "Online",
        "user6 is still cached"
    );
    let handled = gw
        .metric(r#"tim_gateway_callbacks_total{command="state_change",result="handled"}"#)
        .await;
    assert_eq!(handled, Some(1.0));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apis_own_limit_is_never_exceeded_under_load() {
    let gw = gateway(CHECK, 0, |config| {
        config.passthrough.limits.insert(
            CHECK.label.to_owned(),
            std::num::NonZeroU32::new(20).unwrap(),
        );
        config.limits.max_queue_wait = Duration::from_secs(5);
    })
    .await;
    let caller = Caller::new(gw.addr);
    // 50 callers of 100 distinct ids each: 50 full calls at 20/s.
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..50).map(|c| {
        let caller = caller.clone();
        async move {
            let ids: Vec<String> = (0..100).map(|k| format!("user{}", c * 100 + k)).collect();
            caller.post(CHECK.path, &body(CHECK, &ids, 0)).await
        }
    }))
    .await;
    for answer in &answers {
        assert_eq!(answer["ActionStatus"], "OK", "{answer}");
    }
    let at: Vec<Instant> = calls_of(&gw, CHECK).iter().map(|c| c.at).collect();
    assert_eq!(at.len(), 50, "one full call per caller's distinct ids");
    assert!(
        max_in_any_second(&at) <= 20,
        "{} in one second",
        max_in_any_second(&at)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "paced, not burst"
    );
    gw.shutdown().await;
}

/// In a fleet a `State.StateChange` heard by one gateway drops the status on every gateway,
/// through the fleet's channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_heard_by_one_gateway_drops_the_status_on_every_gateway() {
    let fleet = support::fleet::TestFleet::start(
        2,
        |_| {},
        |config| {
            with_list_api(config, ONLINE, 600_000);
        },
    )
    .await;
    let ask = body(ONLINE, &["user6".into()], 1);
    for gateway in &fleet.gateways {
        assert_eq!(status_of(&gateway.post(ONLINE.path, &ask).await), "Online");
    }
    // The fleet's sim has nowhere to call back: the change is silent.
    fleet
        .sim
        .set_online_status("user6", "Offline")
        .await
        .expect("set");
    for gateway in &fleet.gateways {
        let kept = gateway.post(ONLINE.path, &ask).await;
        assert_eq!(status_of(&kept), "Online", "cached until announced");
    }
    let url = format!("http://{}/tim/callback", fleet.gateways[0].addr);
    let sender = tim_gateway::sim::CallbackSender::try_new(support::SDKAPPID, None, &url)
        .expect("callback sender");
    let callback = tim_gateway::sim::state_change_callback("user6", "Logout", "Unregister");
    let (status, _) = sender
        .send(tim_gateway::sim::STATE_CHANGE_COMMAND, callback)
        .await
        .expect("callback answered");
    assert_eq!(status, 200);
    assert_eq!(
        status_of(&fleet.gateways[0].post(ONLINE.path, &ask).await),
        "Offline"
    );
    let other = &fleet.gateways[1];
    let seen = support::eventually(Duration::from_secs(2), || async {
        status_of(&other.post(ONLINE.path, &ask).await) == "Offline"
    });
    assert!(seen.await, "the other gateway kept the old status");
    fleet.shutdown().await;
}

/// With the upstream down, hung, answering garbage or failing every other call, each caller of
/// a shared call gets an answer in time: Tencent's answer after a retry, or a Tencent-style
/// error; nothing garbled is cached, and the list read serves again once the upstream heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_reach_every_caller_as_an_answer_or_a_tencent_error() {
    use tim_gateway::sim::Fault;
    let gw = gateway(ONLINE, 60_000, |config| {
        config.upstream.timeout = Duration::from_millis(300);
        config.limits.max_queue_wait = Duration::from_millis(500);
        config.breaker.failure_threshold = 1000;
    })
    .await;
    let caller = Caller::new(gw.addr);
    let ask = |n: usize| body(ONLINE, &[format!("user{n}"), "user1".into()], 0);
    let all = |first: usize| {
        let caller = caller.clone();
        async move {
            let asks: Vec<Value> = (first..first + 5).map(ask).collect();
            let answers = asks.iter().map(|a| caller.post(ONLINE.path, a));
            futures_util::future::join_all(answers).await
        }
    };

    gw.sim.set_fault(Fault::EveryOther(502));
    for answer in all(100).await {
        assert_eq!(answer["ActionStatus"], "OK", "a 502 is retried: {answer}");
    }
    for (fault, code) in [
        (Fault::RefuseConnections, 91001),
        (Fault::Hang, 60008),
        (Fault::Garbage, 91003),
    ] {
        gw.sim.set_fault(fault);
        let started = Instant::now();
        for answer in all(200 + code as usize % 100).await {
            assert_eq!(answer["ActionStatus"], "FAIL", "{fault:?}: {answer}");
            assert_eq!(answer["ErrorCode"], code, "{fault:?}: {answer}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{fault:?} took {:?}",
            started.elapsed()
        );
        gw.sim.set_fault(Fault::None);
    }
    let healed = gw.post(ONLINE.path, &ask(300)).await;
    let alone = Caller::new(gw.sim.addr())
        .post(ONLINE.path, &ask(300))
        .await;
    assert_eq!(healed, alone, "served again once healed");
    gw.shutdown().await;
}

/// `POST /admin/purge` drops the accounts' list entries too (an operator's "forget this user").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_drops_the_accounts_cached_status_and_check() {
    let gw = gateway(ONLINE, 600_000, |config| {
        with_list_api(config, CHECK, 600_000)
    })
    .await;
    let ask = body(ONLINE, &["user9".into()], 0);
    assert_eq!(status_of(&gw.post(ONLINE.path, &ask).await), "Online");
    let check = body(CHECK, &["user9".into()], 0);
    gw.post(CHECK.path, &check).await;
    gw.sim
        .set_online_status("user9", "Offline")
        .await
        .expect("set");
    assert_eq!(
        status_of(&gw.post(ONLINE.path, &ask).await),
        "Online",
        "kept"
    );
    let purged = gw
        .post("/admin/purge", &json!({"To_Account": ["user9"]}))
        .await;
    assert_eq!(purged["PurgedCount"], 1, "{purged}");
    assert_eq!(status_of(&gw.post(ONLINE.path, &ask).await), "Offline");
    let checks = calls_of(&gw, CHECK).len();
    gw.post(CHECK.path, &check).await;
    assert_eq!(
        calls_of(&gw, CHECK).len(),
        checks + 1,
        "the check was purged too"
    );
    gw.shutdown().await;
}

/// The ids a fleet test asks for: known to the sim, none failing there (a per-id failure is
/// never shared: each gateway fetches its own), for member info group1's members and others.
fn fleet_id(spec: &ListSpec, n: usize) -> String {
    match spec.label {
        "group_open_http_svc/get_specified_group_member_info" => format!("user{}", n % 30 + 30),
        _ => format!("user{}", 30 + n),
    }
}

/// How many times each id was sent upstream, across every call of `spec`.
fn sends_per_id(sim: &tim_gateway::sim::Sim, spec: &ListSpec) -> HashMap<String, usize> {
    let mut sends = HashMap::new();
    for call in sim.calls().into_iter().filter(|c| c.path == spec.path) {
        for id in call.accounts {
            *sends.entry(id).or_default() += 1;
        }
    }
    sends
}

/// A fleet of three gateways whose callers all ask, at the same moment, for overlapping new
/// ids: each id is sent upstream once in the whole fleet (one gateway claims it, the others
/// wait for that fetch and answer from what it shared), and every caller's answer equals the
/// sim's answer to its own request. With a TTL the fleet keeps each id in the shared tier: a
/// fourth round on any gateway costs nothing upstream.
async fn an_id_asked_on_every_gateway_at_once_is_fetched_once(spec: &'static ListSpec, ttl: u64) {
    let fleet = support::fleet::TestFleet::start(
        3,
        |sim| sim.latency = Duration::from_millis(400),
        |config| with_list_api(config, spec, ttl),
    )
    .await;
    let requests: Vec<Value> = (0..30)
        .map(|caller| {
            let ids = (0..12).map(|k| fleet_id(spec, (caller * 7 + k * 2) % 60));
            body(spec, &ids.collect::<Vec<_>>(), 0)
        })
        .collect();
    let callers = fleet.callers();
    let answers = futures_util::future::join_all(requests.iter().enumerate().map(|(i, r)| {
        let caller = callers[i % callers.len()].clone();
        async move { caller.post(spec.path, r).await }
    }))
    .await;
    let sends = sends_per_id(&fleet.sim, spec);
    let asked: std::collections::HashSet<String> = (0..60).map(|n| fleet_id(spec, n)).collect();
    let metrics = futures_util::future::join_all(fleet.gateways.iter().map(|g| async {
        let (_, text) = g.send("GET", "/metrics", "").await;
        let text = String::from_utf8_lossy(&text).into_owned();
        let ours = |l: &&str| l.starts_with("tim_gateway_list_ids") || l.contains("list_");
        text.lines().filter(ours).collect::<Vec<_>>().join("\n")
    }))
    .await;
    let sample = format!(
        "tim_gateway_list_ids_total{{api=\"{}\",source=\"shared\"}}",
        spec.label
    );
    let shared: f64 = metrics
        .iter()
        .filter_map(|m| support::metric_value(m, &sample))
        .sum();
    assert!(
        shared > 0.0,
        "peers answered from the shared tier:\n{metrics:?}"
    );
    for id in &asked {
        assert_eq!(sends.get(id), Some(&1), "{id} sent {sends:?}");
    }
    fleet.sim.set_latency(Duration::ZERO);
    let direct = Caller::new(fleet.sim.addr());
    for (request, answer) in requests.iter().zip(&answers) {
        let alone = direct.post(spec.path, request).await;
        assert_eq!(answer, &alone, "the fleet's answer to {request}");
    }
    if ttl > 0 {
        let before = sends_per_id(&fleet.sim, spec);
        for (i, request) in requests.iter().enumerate() {
            callers[(i + 1) % callers.len()]
                .post(spec.path, request)
                .await;
        }
        assert_eq!(sends_per_id(&fleet.sim, spec), before, "kept fleet-wide");
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_status_asked_across_a_fleet_is_fetched_once() {
    an_id_asked_on_every_gateway_at_once_is_fetched_once(ONLINE, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_checks_asked_across_a_fleet_are_fetched_once_and_kept() {
    an_id_asked_on_every_gateway_at_once_is_fetched_once(CHECK, 60_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_asked_across_a_fleet_are_fetched_once() {
    an_id_asked_on_every_gateway_at_once_is_fetched_once(MEMBERS, 0).await;
}

/// A gateway SIGKILLed while it fetches ids it claimed: the peer waiting on its claim waits no
/// longer than the claim lives (the longest a fetch can take), then fetches for itself; its
/// caller gets the sim's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_fetch_leaves_its_ids_to_the_fleet() {
    let quick = |config: &mut Config| {
        with_list_api(config, ONLINE, 0);
        config.limits.max_queue_wait = Duration::from_millis(500);
        config.upstream.timeout = Duration::from_millis(1_000);
    };
    let fleet = support::fleet::TestFleet::start(1, |_| {}, quick).await;
    let dir = std::env::temp_dir().join(format!("tim-gateway-lists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("tim-gateway.toml");
    let config = format!("[list_apis.\"{}\"]\nttl_ms = 0\n", ONLINE.label);
    std::fs::write(&file, config).expect("config");
    let args = ["--config", file.to_str().expect("utf-8 path")];
    let env = [
        ("TIM_GATEWAY__LIMITS__MAX_QUEUE_WAIT_MS", "500"),
        ("TIM_GATEWAY__UPSTREAM__TIMEOUT_MS", "1000"),
    ];
    let mut doomed =
        support::fleet::process_member_with(&fleet.sim, &fleet.redis, &args, &env).await;
    fleet.sim.set_latency(Duration::from_millis(800));
    let ask = body(ONLINE, &["user40".into()], 1);
    let doomed_caller = Caller::clone(&doomed);
    let first = tokio::spawn({
        let ask = ask.clone();
        async move {
            let query = format!("{}?{}", ONLINE.path, support::auth_query());
            let sent = doomed_caller.try_send_with("POST", &query, &[], ask.to_string());
            sent.await.map(|_| ())
        }
    });
    let claimed = support::eventually(Duration::from_secs(5), || async {
        sends_per_id(&fleet.sim, ONLINE).contains_key("user40")
    });
    assert!(claimed.await, "the doomed gateway fetched");
    let survivor = Caller::clone(&fleet.gateways[0]);
    let second = tokio::spawn(async move {
        let started = Instant::now();
        (survivor.post(ONLINE.path, &ask).await, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    doomed.kill();
    let killed_at = Instant::now();
    assert!(
        first.await.expect("joined").is_err(),
        "the doomed caller's connection died"
    );
    let (answer, took) = second.await.expect("joined");
    let sends = sends_per_id(&fleet.sim, ONLINE);
    assert_eq!(
        sends.get("user40"),
        Some(&2),
        "the doomed fetch, then the survivor's"
    );
    let last = fleet
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.path == ONLINE.path)
        .last();
    let waited = last.is_some_and(|call| call.at >= killed_at);
    assert!(
        waited,
        "the survivor waited on the claim instead of fetching at once"
    );
    fleet.sim.set_latency(Duration::ZERO);
    let alone = Caller::new(fleet.sim.addr())
        .post(ONLINE.path, &body(ONLINE, &["user40".into()], 1))
        .await;
    assert_eq!(
        answer, alone,
        "answered by its own fetch after the claim lapsed"
    );
    eprintln!("the peer's caller was answered in {took:?}");
    let _ = std::fs::remove_dir_all(&dir);
    fleet.shutdown().await;
}

/// Redis killed, or frozen (SIGSTOP: every round trip hangs until its timeout), under a
/// fleet's list reads: every gateway fetches for itself, as a standalone gateway would, and
/// every caller still gets the sim's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_reads_survive_the_loss_of_redis() {
    for frozen in [false, true] {
        list_reads_without_redis(frozen).await;
    }
}

async fn list_reads_without_redis(frozen: bool) {
    let mut fleet = support::fleet::TestFleet::start(
        2,
        |sim| sim.latency = Duration::from_millis(50),
        |config| with_list_api(config, ONLINE, 60_000),
    )
    .await;
    if frozen {
        fleet.redis.pause();
    } else {
        fleet.redis.kill();
    }
    let requests: Vec<Value> = (0..20)
        .map(|caller| {
            let ids = (0..10).map(|k| fleet_id(ONLINE, (caller * 3 + k) % 40));
            body(ONLINE, &ids.collect::<Vec<_>>(), (caller % 2) as u8)
        })
        .collect();
    let callers = fleet.callers();
    let answers = futures_util::future::join_all(requests.iter().enumerate().map(|(i, r)| {
        let caller = callers[i % 2].clone();
        async move { caller.post(ONLINE.path, r).await }
    }))
    .await;
    fleet.sim.set_latency(Duration::ZERO);
    let direct = Caller::new(fleet.sim.addr());
    for (request, answer) in requests.iter().zip(&answers) {
        let alone = direct.post(ONLINE.path, request).await;
        assert_eq!(answer, &alone, "frozen {frozen}: {request}");
    }
    if frozen {
        fleet.redis.resume();
    }
    fleet.shutdown().await;
}
