//! UserSig against tests/data/usersig-vectors.json (Tencent generator output, copied into the
//! repo so a fresh clone tests itself), plus malformed, tampered and hostile input.

use super::*;
use proptest::prelude::*;
use serde_json::Value;
use std::io::Write as _;

const VECTORS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/usersig-vectors.json"
);

fn vectors_file() -> Value {
    let text = std::fs::read_to_string(VECTORS_PATH)
        .unwrap_or_else(|e| panic!("cannot read UserSig vectors at {VECTORS_PATH}: {e}"));
    serde_json::from_str(&text).expect("usersig-vectors.json is valid JSON")
}

fn vectors() -> Vec<Value> {
    let all = vectors_file()["vectors"]
        .as_array()
        .expect("`vectors` is an array")
        .clone();
    assert!(!all.is_empty(), "no vectors in {VECTORS_PATH}");
    all
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is a string in {v}"))
}

fn u64_of(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is an integer in {v}"))
}

/// The JSON document inside a usersig, parsed.
fn inflate_to_json(usersig: &str) -> Value {
    let bytes = decode_outer(usersig).expect("usersig decodes and inflates");
    serde_json::from_slice(&bytes).expect("inflated usersig is JSON")
}

/// Wraps arbitrary JSON text the way a generator would (zlib default level, Tencent base64).
fn wrap(json: &str) -> String {
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    zlib.write_all(json.as_bytes()).expect("write to Vec");
    encode_outer(&zlib.finish().expect("finish into Vec"))
}

fn v1() -> (Value, String) {
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "v1_tencent_sample_key")
        .expect("v1 vector");
    let key = str_of(&v["inputs"], "key").to_owned();
    (v, key)
}

fn v1_json_with(field: &str, value: Value) -> String {
    let (v, _) = v1();
    let mut doc = v["decoded_object"].clone();
    doc[field] = value;
    doc.to_string()
}

#[test]
fn decodes_every_vector_from_both_generators() {
    for v in vectors() {
        let name = str_of(&v, "name");
        let inputs = &v["inputs"];
        let mut usersigs = vec![(str_of(&v, "usersig"), str_of(&v, "decoded_json"))];
        if let Some(alt) = v.get("alt_generator_npm") {
            usersigs.push((str_of(alt, "usersig"), str_of(alt, "decoded_json")));
        }
        for (usersig, decoded_json) in usersigs {
            let raw = decode_outer(usersig).expect("decodes");
            assert_eq!(raw, decoded_json.as_bytes(), "{name}: inflated text");
            assert_eq!(
                inflate_to_json(usersig),
                v["decoded_object"],
                "{name}: decoded values"
            );
            assert_eq!(
                inflate_to_json(usersig)["TLS.sig"],
                v["sig_hmac_b64"],
                "{name}: TLS.sig"
            );

            let got = decode_and_check(usersig, str_of(inputs, "key")).expect(name);
            assert_eq!(got.identifier, str_of(inputs, "identifier"), "{name}");
            assert_eq!(got.sdkappid, u64_of(inputs, "sdkappid"), "{name}");
            assert_eq!(got.time, u64_of(inputs, "current_time"), "{name}");
            assert_eq!(got.expire, u64_of(inputs, "expire"), "{name}");
            assert_eq!(got.has_userbuf, !inputs["userbuf_b64"].is_null(), "{name}");
            assert_eq!(got.expires_at(), u64_of(&v, "expires_at"), "{name}");
        }
    }
}

#[test]
fn sign_reproduces_every_vector() {
    for v in vectors() {
        let name = str_of(&v, "name");
        let inputs = &v["inputs"];
        let userbuf = inputs["userbuf_b64"]
            .as_str()
            .map(|b64| STANDARD.decode(b64).expect("userbuf_b64 is base64"));
        let ours = sign_with_userbuf(
            u64_of(inputs, "sdkappid"),
            str_of(inputs, "key"),
            str_of(inputs, "identifier"),
            u64_of(inputs, "current_time"),
            u64_of(inputs, "expire"),
            userbuf.as_deref(),
        );
        assert_eq!(inflate_to_json(&ours), v["decoded_object"], "{name}");
        let compressed =
            STANDARD.decode(ours.replace('*', "+").replace('-', "/").replace('_', "="));
        assert_eq!(
            compressed.expect("base64")[..2],
            [0x78, 0x9c],
            "{name}: zlib default level"
        );
        if userbuf.is_none() {
            let plain = sign(
                u64_of(inputs, "sdkappid"),
                str_of(inputs, "key"),
                str_of(inputs, "identifier"),
                u64_of(inputs, "current_time"),
                u64_of(inputs, "expire"),
            );
            assert_eq!(plain, ours, "{name}: sign == sign_with_userbuf(None)");
        }
    }
}

#[test]
fn sign_writes_compact_json_in_python_field_order() {
    let (v, key) = v1();
    let ours = sign(1400000000, &key, "xiaojun", 1700000000, 15552000);
    let text = String::from_utf8(decode_outer(&ours).expect("decodes")).expect("UTF-8");
    let sig = str_of(&v, "sig_hmac_b64");
    let expected = format!(
        r#"{{"TLS.ver":"2.0","TLS.identifier":"xiaojun","TLS.sdkappid":1400000000,"TLS.expire":15552000,"TLS.time":1700000000,"TLS.sig":"{sig}"}}"#
    );
    assert_eq!(text, expected);
}

#[test]
fn string_to_sign_matches_every_vector() {
    for v in vectors() {
        let inputs = &v["inputs"];
        let text = string_to_sign(
            str_of(inputs, "identifier"),
            u64_of(inputs, "sdkappid"),
            u64_of(inputs, "current_time"),
            u64_of(inputs, "expire"),
            inputs["userbuf_b64"].as_str(),
        );
        assert_eq!(text, str_of(&v, "string_to_sign"), "{}", v["name"]);
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, str_of(&v, "string_to_sign_hex"), "{}", v["name"]);
    }
}

#[test]
fn verification_cases_have_expected_outcomes() {
    let file = vectors_file();
    let vectors = file["vectors"].as_array().expect("vectors");
    let cases = file["verification_cases"]
        .as_array()
        .expect("verification_cases");
    assert!(!cases.is_empty());
    for case in cases {
        let name = str_of(case, "name");
        let from = str_of(case, "usersig_from");
        let usersig = if from == "literal" {
            case["usersig"]
                .as_str()
                .unwrap_or("this is not a usersig!")
                .to_owned()
        } else {
            let vector = vectors.iter().find(|v| v["name"] == from).expect(from);
            str_of(vector, "usersig").to_owned()
        };
        let with = &case["verify_with"];
        let got = verify(
            &usersig,
            str_of(with, "key"),
            u64_of(with, "sdkappid"),
            str_of(with, "identifier"),
            u64_of(with, "now"),
        );
        let expected = match str_of(case, "expected") {
            "ok" => Ok(()),
            "expired" => Err(UserSigError::Expired),
            "identifier_mismatch" => Err(UserSigError::IdentifierMismatch),
            "sdkappid_mismatch" => Err(UserSigError::SdkAppIdMismatch),
            "sig_mismatch" => Err(UserSigError::BadSignature),
            "decode_error" => Err(UserSigError::Decode),
            other => panic!("{name}: unknown expected outcome {other:?}"),
        };
        assert_eq!(got.map(|_| ()), expected, "{name}");
    }
}

#[test]
fn empty_usersig_is_empty() {
    let (_, key) = v1();
    assert_eq!(
        verify("", &key, 1400000000, "xiaojun", 1700000000),
        Err(UserSigError::Empty)
    );
}

#[test]
fn every_truncation_is_a_decode_error() {
    let (v, key) = v1();
    for usersig in [
        str_of(&v, "usersig"),
        str_of(&v["alt_generator_npm"], "usersig"),
    ] {
        for end in 1..usersig.len() {
            let cut = &usersig[..end];
            assert_eq!(
                decode_and_check(cut, &key),
                Err(UserSigError::Decode),
                "prefix of {end}"
            );
        }
    }
}

#[test]
fn zip_bomb_is_refused_and_limit_is_inclusive() {
    let (v, key) = v1();
    let json = str_of(&v, "decoded_json");
    let at_limit = format!("{json}{}", " ".repeat(MAX_INFLATED_BYTES - json.len()));
    assert!(decode_and_check(&wrap(&at_limit), &key).is_ok());
    let over = format!("{at_limit} ");
    assert_eq!(
        decode_and_check(&wrap(&over), &key),
        Err(UserSigError::Decode)
    );
    let bomb = wrap(&" ".repeat(64 * 1024 * 1024));
    assert!(bomb.len() < 128 * 1024, "the bomb is small on the wire");
    assert_eq!(decode_and_check(&bomb, &key), Err(UserSigError::Decode));
}

#[test]
fn tampered_sig_or_claims_fail_the_hmac() {
    let (_, key) = v1();
    let flipped = v1_json_with(
        "TLS.sig",
        "MvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4=".into(),
    );
    let other_id = v1_json_with("TLS.identifier", "administrator".into());
    let longer = v1_json_with("TLS.expire", 15552001.into());
    let short_sig = v1_json_with("TLS.sig", "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip".into());
    let not_base64 = v1_json_with("TLS.sig", "not base64!".into());
    let added_userbuf = v1_json_with("TLS.userbuf", "YWJj".into());
    for json in [
        flipped,
        other_id,
        longer,
        short_sig,
        not_base64,
        added_userbuf,
    ] {
        assert_eq!(
            decode_and_check(&wrap(&json), &key),
            Err(UserSigError::BadSignature),
            "{json}"
        );
    }
}

#[test]
fn numbers_may_arrive_as_digit_strings() {
    let (v, key) = v1();
    let mut doc = v["decoded_object"].clone();
    for field in ["TLS.sdkappid", "TLS.time", "TLS.expire"] {
        doc[field] = doc[field].to_string().into();
    }
    let got = verify(
        &wrap(&doc.to_string()),
        &key,
        1400000000,
        "xiaojun",
        1700000000,
    );
    assert_eq!(got.map(|s| s.expires_at()), Ok(1715552000));
}

#[test]
fn wrong_shapes_are_decode_errors() {
    let (v, key) = v1();
    let mut missing_sig = v["decoded_object"].clone();
    missing_sig
        .as_object_mut()
        .expect("object")
        .remove("TLS.sig");
    let cases = [
        v1_json_with("TLS.identifier", 7.into()),
        v1_json_with("TLS.sdkappid", 1400000000.5.into()),
        v1_json_with("TLS.time", (-1).into()),
        v1_json_with("TLS.expire", "+15552000".into()),
        v1_json_with("TLS.expire", "".into()),
        v1_json_with("TLS.expire", "99999999999999999999999".into()),
        v1_json_with("TLS.sig", Value::Null),
        v1_json_with("TLS.userbuf", "not\nbase64".into()),
        missing_sig.to_string(),
        "[]".to_owned(),
        r#"["xiaojun", 1400000000, 1700000000, 15552000, null, "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="]"#
            .to_owned(),
        "not json".to_owned(),
        format!("{} trailing", v["decoded_json"].as_str().expect("decoded_json")),
    ];
    for json in cases {
        assert_eq!(
            decode_and_check(&wrap(&json), &key),
            Err(UserSigError::Decode),
            "{json}"
        );
    }
    assert_eq!(decode_and_check("%%%%", &key), Err(UserSigError::Decode));
    assert_eq!(
        decode_and_check(&encode_outer(b"not zlib"), &key),
        Err(UserSigError::Decode)
    );
}

#[test]
fn accepts_stored_zlib_with_trailing_newline_and_standard_alphabet() {
    let (v, key) = v1();
    let go_style = format!("{}\n", str_of(&v, "decoded_json"));
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::none());
    zlib.write_all(go_style.as_bytes()).expect("write to Vec");
    let stored = encode_outer(&zlib.finish().expect("finish"));
    assert!(verify(&stored, &key, 1400000000, "xiaojun", 1700000000).is_ok());
    let standard = stored.replace('*', "+").replace('-', "/").replace('_', "=");
    assert!(verify(&standard, &key, 1400000000, "xiaojun", 1700000000).is_ok());
}

#[test]
fn claims_are_checked_sdkappid_then_identifier_then_expiry() {
    let sig = VerifiedSig {
        identifier: "a".into(),
        sdkappid: 1,
        time: 100,
        expire: 10,
        has_userbuf: false,
    };
    assert_eq!(
        sig.check_claims(2, "b", 111),
        Err(UserSigError::SdkAppIdMismatch)
    );
    assert_eq!(
        sig.check_claims(1, "b", 111),
        Err(UserSigError::IdentifierMismatch)
    );
    assert_eq!(sig.check_claims(1, "a", 111), Err(UserSigError::Expired));
    assert_eq!(sig.check_claims(1, "a", 110), Ok(()));
    assert_eq!(
        sig.check_claims(1, "a", 0),
        Ok(()),
        "issued in the future is not refused"
    );
}

#[test]
fn expiry_saturates_instead_of_overflowing() {
    let sig = VerifiedSig {
        identifier: "a".into(),
        sdkappid: 1,
        time: u64::MAX - 1,
        expire: 10,
        has_userbuf: false,
    };
    assert_eq!(sig.expires_at(), u64::MAX);
    assert_eq!(sig.check_claims(1, "a", u64::MAX), Ok(()));
}

#[test]
fn userbuf_round_trips_including_empty() {
    let key = "k";
    let with = sign_with_userbuf(1, key, "a", 100, 10, Some(b"abc"));
    assert_eq!(inflate_to_json(&with)["TLS.userbuf"], "YWJj");
    assert!(verify(&with, key, 1, "a", 100).expect("valid").has_userbuf);
    let empty = sign_with_userbuf(1, key, "a", 100, 10, Some(b""));
    assert_eq!(inflate_to_json(&empty)["TLS.userbuf"], "");
    assert!(verify(&empty, key, 1, "a", 100).expect("valid").has_userbuf);
    assert!(
        !verify(&sign(1, key, "a", 100, 10), key, 1, "a", 100)
            .expect("valid")
            .has_userbuf
    );
}

#[test]
fn sign_escapes_awkward_identifiers() {
    for identifier in ["", "quote\"back\\slash", "line\nbreak", "用户1", "\u{0}"] {
        let usersig = sign(1, "key", identifier, 100, 10);
        assert_eq!(
            verify(&usersig, "key", 1, identifier, 100).map(|s| s.identifier),
            Ok(identifier.to_owned())
        );
    }
}

#[test]
fn error_codes_are_tencents() {
    let table = [
        (UserSigError::Empty, 70002),
        (UserSigError::Decode, 70003),
        (UserSigError::BadSignature, 70009),
        (UserSigError::Expired, 70001),
        (UserSigError::IdentifierMismatch, 70013),
        (UserSigError::SdkAppIdMismatch, 70014),
    ];
    for (error, code) in table {
        assert_eq!(error.tencent_code(), code, "{error}");
    }
}

proptest! {
    #[test]
    fn never_panics_on_any_string(s in ".*") {
        let _ = verify(&s, "key", 1, "a", 0);
    }

    #[test]
    fn never_panics_on_any_zlib_payload(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(&bytes).expect("write to Vec");
        let _ = verify(&encode_outer(&zlib.finish().expect("finish")), "key", 1, "a", 0);
        let _ = verify(&encode_outer(&bytes), "key", 1, "a", 0);
    }

    #[test]
    fn sign_then_verify_round_trips(
        identifier in ".*", key in ".*", sdkappid: u64, time: u64, expire: u64,
    ) {
        let usersig = sign(sdkappid, &key, &identifier, time, expire);
        let got = verify(&usersig, &key, sdkappid, &identifier, time);
        prop_assert_eq!(got.map(|s| (s.identifier, s.time, s.expire)), Ok((identifier, time, expire)));
    }
}
