//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz / libFuzzer), hidden from the docs.
//!
//! One function per target: each feeds arbitrary bytes to one decoder and asserts what must hold
//! whatever the input, so a panic here is a finding (a crash in the decoder, or a broken
//! invariant). The targets reach the crate only through this module, so the decoders behind it
//! can become `pub(crate)` later. `tests/fuzz_corpus.rs` replays the seed corpus and every
//! crash found so far through these same functions on each `cargo test`.

use std::collections::HashMap;

use crate::config::{Config, SecretKey};
use crate::wire::{self, Account, Tag, STANDARD_TAGS};
use crate::{batcher, error::codes, sim, usersig};

/// SDKAppID and key the UserSig target verifies against (the demo app's).
const SDKAPPID: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
/// A fixed clock, so a finding replays the same way on any day.
const NOW_UNIX: u64 = 1_760_000_000;

/// The accounts and tags an upstream answer is split for (seeds name the same ones).
const SPLIT_ACCOUNTS: [&str; 3] = ["user1", "user2", "user3"];
const SPLIT_CUSTOM_TAG: &str = "Tag_Profile_Custom_Test";

/// A `portrait_get` request body: the gateway's decoder ([`wire::decode_portrait_get`]) must
/// agree with the sim's independent one on every input, and every refusal renders as JSON.
pub fn portrait_get_request(body: &[u8]) {
    let gateway = wire::decode_portrait_get(body);
    let oracle = sim::json::decode_get(body);
    match (&gateway, &oracle) {
        (Ok(request), Ok(expected)) => {
            let accounts: Vec<&str> = request.accounts.iter().map(|a| a.as_ref()).collect();
            let tags: Vec<&str> = request.tags.iter().map(Tag::as_str).collect();
            assert_eq!(accounts, expected.accounts, "accounts differ");
            assert_eq!(tags, expected.tags, "tags differ");
            assert!((1..=wire::MAX_ACCOUNTS_PER_REQUEST).contains(&accounts.len()));
            assert!(!tags.is_empty());
        }
        // The gateway refuses malformed tag names itself; the sim refuses them as unknown.
        (Err(e), Ok(expected)) if e.code() == codes::TAG_NOT_FOUND => assert!(
            expected
                .tags
                .iter()
                .any(|t| !STANDARD_TAGS.contains(&t.as_str())),
            "40009 for standard tags only"
        ),
        (Err(e), Err(refusal)) => assert_eq!(e.code(), refusal.code, "codes differ: {e}"),
        (gateway, oracle) => panic!("gateway {gateway:?} but oracle {oracle:?}"),
    }
    if let Err(e) = gateway {
        let rendered: serde_json::Value =
            serde_json::from_slice(&wire::error_body(&e)).expect("an error body is JSON");
        assert_eq!(rendered["ErrorCode"], e.code());
    }
}

/// An upstream `portrait_get` answer, split for three accounts and three tags: either the
/// whole call fails with a non-zero code, or every account gets exactly one outcome, with one
/// entry per asked tag in order.
pub fn upstream_answer(body: &[u8]) {
    let accounts: Vec<Account> = SPLIT_ACCOUNTS.iter().map(|a| Account::from(*a)).collect();
    let tags: Vec<Tag> = [STANDARD_TAGS[0], STANDARD_TAGS[1], SPLIT_CUSTOM_TAG]
        .iter()
        .map(|t| Tag::parse(t).expect("known tags"))
        .collect();
    match batcher::split_answer(body, &accounts, &tags) {
        Err(e) => assert_ne!(e.code(), 0, "a failure has a code"),
        Ok(fetches) => {
            assert_eq!(fetches.len(), accounts.len(), "one outcome per account");
            for fetch in fetches {
                match fetch {
                    batcher::AccountFetch::Values(values) => {
                        let got: Vec<&Tag> = values.iter().map(|(tag, _)| tag).collect();
                        assert_eq!(got, tags.iter().collect::<Vec<_>>(), "tags in order");
                    }
                    batcher::AccountFetch::Failed { code, .. } => {
                        assert_ne!(code, 0, "a failed account has a code")
                    }
                }
            }
        }
    }
}

/// A UserSig string: decoding and verifying never panics, a verified one carries the claims it
/// was checked against, and signing the input as an identifier verifies back to it.
pub fn usersig(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = sim::DEMO_SECRET_KEY;
    if let Ok(verified) = usersig::verify(text, key, SDKAPPID, ADMIN, NOW_UNIX) {
        assert_eq!(verified.identifier, ADMIN);
        assert_eq!(verified.sdkappid, SDKAPPID);
    }
    let _ = usersig::decode_and_check(text, key);
    let signed = usersig::sign(SDKAPPID, key, text, NOW_UNIX, 86_400);
    let verified = usersig::verify(&signed, key, SDKAPPID, text, NOW_UNIX + 1)
        .expect("a fresh UserSig verifies");
    assert_eq!(verified.identifier, text);
}

/// A config file's text, with no environment: parsing and validating never panics, and a valid
/// config's `Debug` does not depend on its secret key.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: HashMap<String, String> = HashMap::new();
    match Config::from_toml_str(text, &env) {
        // Debug must not depend on a set key. (Searching the output for the key's text was a
        // false finding: a key equal to the identifier is shown, as the identifier.)
        Ok(config) if !config.upstream.secret_key.is_empty() => {
            let mut other = config.clone();
            let key = format!("{}-other", config.upstream.secret_key.expose());
            other.upstream.secret_key = SecretKey::new(key);
            assert_eq!(
                format!("{config:?}"),
                format!("{other:?}"),
                "Debug shows the key"
            );
        }
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
