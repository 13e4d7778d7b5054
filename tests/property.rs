//! Property: any mix of concurrent callers (random accounts including nonexistent and failing
//! ones, random standard, custom and unknown custom tags, duplicates) each gets exactly what
//! Tencent answers to its body alone, cold, again from the per-pair cache, and a third time
//! (when bodies answered wholly from the cache come from the answer cache), whichever way the
//! sim fails nonexistent accounts.

mod support;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};
use support::*;
use tim_gateway::sim::MissingAccount;
use tim_gateway::STANDARD_TAGS;

/// A custom tag the sim does not know (40009 for the whole call).
const UNKNOWN_CUSTOM: &str = "Tag_Profile_Custom_Nope";

fn account() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (0u32..=40).prop_map(|n| format!("user{n}")),
        1 => Just("nobody".to_owned()),
        // Both fail per account with 40006 (n % 97 == 13).
        1 => prop::sample::select(vec![FAILING_ACCOUNT, "user110"]).prop_map(str::to_owned),
    ]
}

fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(STANDARD_TAGS.to_vec()).prop_map(str::to_owned),
        3 => Just(CUSTOM.to_owned()),
        1 => Just(UNKNOWN_CUSTOM.to_owned()),
    ]
}

/// A portrait_get body; the small pools make repeated accounts and tags common.
fn body() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(account(), 1..=8),
        prop::collection::vec(tag(), 1..=4),
    )
        .prop_map(|(accounts, tags)| json!({ "To_Account": accounts, "TagList": tags }))
}

/// 2–12 callers: 1–8 distinct draws plus 1–4 exact repeats of earlier ones.
fn callers() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::collection::vec(body(), 1..=8),
        prop::collection::vec(any::<Index>(), 1..=4),
    )
        .prop_map(|(mut bodies, repeats)| {
            for index in repeats {
                let repeat = index.get(&bodies).clone();
                bodies.push(repeat);
            }
            bodies
        })
}

/// Sends every body at once; returns the answers in body order.
async fn send_together(gw: &TestGateway, bodies: &[Value]) -> Vec<Value> {
    futures_util::future::join_all(bodies.iter().map(|b| gw.portrait_get(b))).await
}

fn check_case(bodies: &[Value], missing_account: MissingAccount) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let gw = TestGateway::builder()
            .config(|c| c.limits.batch_window = std::time::Duration::from_millis(20))
            .sim(|s| s.missing_account = missing_account)
            .start()
            .await;
        let mut result = Ok(());
        for round in ["cold", "again", "whole answers"] {
            let answers = send_together(&gw, bodies).await;
            for (body, answer) in bodies.iter().zip(&answers) {
                if *answer != gw.alone(body) {
                    result = Err(TestCaseError::fail(format!(
                        "{round}: {body} was answered {answer}, Tencent alone answers {}",
                        gw.alone(body)
                    )));
                }
            }
            if result.is_err() {
                break;
            }
        }
        gw.shutdown().await;
        result
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_concurrent_caller_gets_exactly_what_tencent_answers_its_body_alone(
        bodies in callers()
    ) {
        check_case(&bodies, MissingAccount::PerAccount)?;
    }

    #[test]
    fn every_caller_gets_its_own_answer_when_a_nonexistent_account_fails_the_whole_call(
        bodies in callers()
    ) {
        check_case(&bodies, MissingAccount::WholeCall)?;
    }
}
