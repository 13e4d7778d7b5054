//! Unit tests for auth.rs: query parsing, Tencent's codes per failure, the verdict cache's bounds.

use super::*;

const KEY: &str = "test-key";
const APP: u64 = 1400000000;
const NOW: u64 = 1_700_000_000;

fn authenticator() -> Authenticator {
    let config = AuthConfig {
        mode: AuthMode::UserSig,
        admins: vec!["administrator".into()],
        verdict_cache_bytes: 64 * 1024,
    };
    Authenticator::new(&config, APP, SecretKey::new(KEY.into()))
}

fn query(sdkappid: u64, identifier: &str, usersig: &str) -> String {
    format!(
        "random=1&usersig={usersig}&sdkappid={sdkappid}&identifier={identifier}&contenttype=json"
    )
}

fn code(result: Result<(), Error>) -> i64 {
    result.err().map_or(0, |e| e.code())
}

#[test]
fn accepts_a_valid_admin_usersig_in_any_parameter_order() {
    let sig = usersig::sign(APP, KEY, "administrator", NOW, 86400);
    assert_eq!(
        code(authenticator().check_at(&query(APP, "administrator", &sig), NOW)),
        0
    );
}

#[test]
fn each_failure_gets_tencents_code() {
    let a = authenticator();
    let good = usersig::sign(APP, KEY, "administrator", NOW, 86400);
    let other_key = usersig::sign(APP, "other", "administrator", NOW, 86400);
    let for_user = usersig::sign(APP, KEY, "someone", NOW, 86400);
    let other_app = usersig::sign(APP + 1, KEY, "administrator", NOW, 86400);
    let cases: Vec<(String, u64, i64)> = vec![
        ("identifier=administrator&usersig=x".into(), NOW, 60012),
        (
            "sdkappid=abc&identifier=administrator&usersig=x".into(),
            NOW,
            60025,
        ),
        (query(APP + 1, "administrator", &good), NOW, 70014),
        (format!("sdkappid={APP}&usersig={good}"), NOW, 60025),
        (query(APP, "someone", &for_user), NOW, 40004),
        (query(APP, "administrator", ""), NOW, 70002),
        (query(APP, "administrator", "garbage"), NOW, 70003),
        (query(APP, "administrator", &other_key), NOW, 70009),
        (query(APP, "administrator", &good), NOW + 86401, 70001),
        (query(APP, "administrator", &for_user), NOW, 70013),
        (query(APP, "administrator", &other_app), NOW, 70014),
    ];
    for (q, now, expected) in cases {
        assert_eq!(code(a.check_at(&q, now)), expected, "{q}");
    }
}

#[test]
fn an_escaped_usersig_verifies_as_its_decoded_text_and_is_cached_apart() {
    let a = authenticator();
    let sig = usersig::sign(APP, KEY, "administrator", NOW, 86400);
    let escaped = format!("%{:02X}{}", sig.as_bytes()[0], &sig[1..]);
    let mangled = format!("%{:02X}{}", sig.as_bytes()[0] ^ 1, &sig[1..]);
    for _ in 0..2 {
        assert_eq!(code(a.check_at(&query(APP, "administrator", &sig), NOW)), 0);
        assert_eq!(
            code(a.check_at(&query(APP, "administrator", &escaped), NOW)),
            0
        );
        assert_ne!(
            code(a.check_at(&query(APP, "administrator", &mangled), NOW)),
            0
        );
    }
}

#[test]
fn cached_verdict_still_checks_expiry_per_request() {
    let a = authenticator();
    let sig = usersig::sign(APP, KEY, "administrator", NOW, 60);
    assert_eq!(code(a.check_at(&query(APP, "administrator", &sig), NOW)), 0);
    assert_eq!(
        code(a.check_at(&query(APP, "administrator", &sig), NOW + 61)),
        70001
    );
}

#[test]
fn query_components_decode_as_form_urlencoding_does() {
    #[derive(Default)]
    struct Expected<'a> {
        sdkappid: Option<Cow<'a, str>>,
        identifier: Option<Cow<'a, str>>,
        usersig: Option<Cow<'a, str>>,
    }
    let queries = [
        "sdkappid=1400000000&identifier=administrator&usersig=eJwt*-_x&random=1",
        "identifier=admin%69strator&sdk%61ppid=14&usersig=a+b%2Bc%zz%",
        "usersig=&usersig=second&identifier&=x&sdkappid=%F0%9F%98%80%ff",
        "",
        "&&identifier=caf%C3%A9",
    ];
    for query in queries {
        let creds = parse_query(query);
        let mut expected = Expected::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "sdkappid" => &mut expected.sdkappid,
                "identifier" => &mut expected.identifier,
                "usersig" => &mut expected.usersig,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        assert_eq!(creds.sdkappid, expected.sdkappid, "{query}");
        assert_eq!(creds.identifier, expected.identifier, "{query}");
        let usersig = creds.usersig_raw.map(form_component);
        assert_eq!(usersig, expected.usersig, "{query}");
    }
    assert_eq!(
        parse_query("identifier=admin%69strator")
            .identifier
            .as_deref(),
        Some("administrator")
    );
}

#[test]
fn bogus_usersigs_cost_bounded_memory() {
    let a = authenticator();
    // Undecodable and overlong strings are answered without being cached.
    for i in 0..1000 {
        let garbage = format!("garbage{i}");
        assert_eq!(
            code(a.check_at(&query(APP, "administrator", &garbage), NOW)),
            70003
        );
    }
    let long = "A".repeat(MAX_USERSIG_BYTES + 1);
    assert_eq!(
        code(a.check_at(&query(APP, "administrator", &long), NOW)),
        70003
    );
    assert_eq!(a.cached().0, 0, "nothing malformed is cached");
    // Well-formed sigs under the wrong key are cached, but within the byte budget.
    for i in 0..2000 {
        let forged = usersig::sign(APP, "attacker", "administrator", NOW + i, 86400);
        assert_eq!(
            code(a.check_at(&query(APP, "administrator", &forged), NOW)),
            70009
        );
    }
    let (entries, bytes) = a.cached();
    assert!(entries > 0, "well-formed failures are remembered briefly");
    assert!(
        bytes <= 64 * 1024,
        "{bytes} bytes cached over a 64 KiB budget"
    );
    // A valid sig still verifies with the cache full of failures.
    let good = usersig::sign(APP, KEY, "administrator", NOW, 86400);
    assert_eq!(
        code(a.check_at(&query(APP, "administrator", &good), NOW)),
        0
    );
}

#[test]
fn failed_verdicts_expire_within_seconds_and_valid_ones_last() {
    let ok: Verdict = Err(UserSigError::BadSignature);
    let key: Arc<str> = Arc::from("x");
    let now = std::time::Instant::now();
    assert_eq!(
        VerdictExpiry.expire_after_create(&key, &ok, now),
        Some(FAILED_VERDICT_TTL)
    );
    let sig = usersig::decode_and_check(&usersig::sign(APP, KEY, "a", NOW, 60), KEY).unwrap();
    let ok: Verdict = Ok(Arc::new(sig));
    assert_eq!(
        VerdictExpiry.expire_after_create(&key, &ok, now),
        Some(VERDICT_TTL)
    );
}

#[test]
fn mode_none_checks_nothing() {
    let config = AuthConfig {
        mode: AuthMode::None,
        admins: vec![],
        verdict_cache_bytes: 64 * 1024,
    };
    let a = Authenticator::new(&config, APP, SecretKey::new(String::new()));
    assert!(a.check(None).is_ok());
}

#[test]
fn a_threads_last_verdict_serves_only_its_own_authenticator_and_claims() {
    let a = authenticator();
    let sig = usersig::sign(APP, KEY, "administrator", NOW, 60);
    assert_eq!(code(a.check_at(&query(APP, "administrator", &sig), NOW)), 0);
    // Another gateway's checker, with another key, on the same thread in the same second.
    let other = Authenticator::new(
        &AuthConfig {
            mode: AuthMode::UserSig,
            admins: vec!["administrator".into()],
            verdict_cache_bytes: 64 * 1024,
        },
        APP,
        SecretKey::new("another-key".into()),
    );
    assert_eq!(
        code(other.check_at(&query(APP, "administrator", &sig), NOW)),
        70009
    );
    // The remembered verdict still has its claims checked.
    assert_eq!(
        code(a.check_at(&query(APP + 1, "administrator", &sig), NOW)),
        70014
    );
    assert_eq!(code(a.check_at(&query(APP, "administrator", &sig), NOW)), 0);
    assert_eq!(
        code(a.check_at(&query(APP, "administrator", &sig), NOW + 61)),
        70001
    );
}
