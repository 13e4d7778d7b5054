//! Unit tests for wire.rs: request validation, upstream decoding, response encoding.

use serde_json::json;

use super::*;

fn decode(body: serde_json::Value) -> Result<PortraitGetRequest<'static>, Error> {
    let bytes: &'static [u8] = Box::leak(body.to_string().into_bytes().into_boxed_slice());
    decode_portrait_get(bytes)
}

#[test]
fn decodes_tencent_request_keeping_order_and_duplicates() {
    let req = decode(json!({"To_Account": ["b", "a", "b"], "TagList": ["Tag_Profile_IM_Nick", "Tag_Profile_Custom_Test", "Tag_Profile_IM_Nick"]}))
        .expect("valid");
    assert_eq!(req.accounts, vec!["b", "a", "b"]);
    let names: Vec<&str> = req.tags.iter().map(Tag::as_str).collect();
    assert_eq!(
        names,
        [
            "Tag_Profile_IM_Nick",
            "Tag_Profile_Custom_Test",
            "Tag_Profile_IM_Nick"
        ]
    );
    assert!(req.tags[1].is_custom() && !req.tags[0].is_custom());
}

#[test]
fn accepts_unescaped_non_ascii_and_ignores_unknown_fields() {
    let body =
        "{\"To_Account\":[\"用户\"],\"TagList\":[\"Tag_Profile_IM_Nick\"],\"Extra\":1}".as_bytes();
    let req = decode_portrait_get(body).expect("valid");
    assert_eq!(req.accounts, vec!["用户"]);
}

#[test]
fn rejects_bad_input_with_tencent_codes() {
    let cases: Vec<(&[u8], i64)> = vec![
        (b"not json", 40001),
        (b"[1,2]", 40001),
        (b"", 40001),
        (br#"{"TagList":["Tag_Profile_IM_Nick"]}"#, 40002),
        (
            br#"{"To_Account":[],"TagList":["Tag_Profile_IM_Nick"]}"#,
            40002,
        ),
        (
            br#"{"To_Account":"a","TagList":["Tag_Profile_IM_Nick"]}"#,
            40001,
        ),
        (
            br#"{"To_Account":[1],"TagList":["Tag_Profile_IM_Nick"]}"#,
            40001,
        ),
        (br#"{"To_Account":["a"]}"#, 40001),
        (br#"{"To_Account":["a"],"TagList":[]}"#, 40001),
        (br#"{"To_Account":["a"],"TagList":[5]}"#, 40001),
        (
            br#"{"To_Account":["a"],"TagList":["Tag_Profile_IM_Bogus"]}"#,
            40009,
        ),
        (br#"{"To_Account":["a"],"TagList":["Nick"]}"#, 40009),
        (
            br#"{"To_Account":["a"],"TagList":["Tag_Profile_Custom_"]}"#,
            40009,
        ),
    ];
    for (body, code) in cases {
        let err = decode_portrait_get(body).expect_err(&String::from_utf8_lossy(body));
        assert_eq!(err.code(), code, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn rejects_more_than_100_accounts() {
    let accounts: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let err = decode(json!({"To_Account": accounts, "TagList": ["Tag_Profile_IM_Nick"]}))
        .expect_err("101");
    assert!(matches!(err, Error::TooManyAccounts(101)));
    let accounts: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    assert!(decode(json!({"To_Account": accounts, "TagList": ["Tag_Profile_IM_Nick"]})).is_ok());
}

#[test]
fn decodes_upstream_answer_with_raw_values_and_per_account_failures() {
    let body = br#"{"UserProfileItem":[
        {"To_Account":"id1","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"Nick\u00e9"},{"Tag":"Tag_Profile_IM_BirthDay","Value":20190419}],"ResultCode":0,"ResultInfo":""},
        {"To_Account":"id4","ResultCode":40006,"ResultInfo":"Err_Profile_PortraitGet_Read_Custom_Data_Fail"}],
        "Fail_Account":["id4"],"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorDisplay":""}"#;
    let answer = decode_upstream_get(body).expect("decodes");
    assert_eq!(answer.profiles.len(), 2);
    assert_eq!(
        answer.profiles[0].items[0].value.get(),
        r#""Nick\u00e9""#,
        "value bytes kept as sent"
    );
    assert_eq!(answer.profiles[0].items[1].value.get(), "20190419");
    assert_eq!(answer.profiles[1].result_code, 40006);
    assert!(answer.profiles[1].items.is_empty());
}

#[test]
fn upstream_whole_call_failure_keeps_tencent_code_and_texts() {
    let body = br#"{"ActionStatus":"FAIL","ErrorCode":40009,"ErrorInfo":"Err_Profile_Tag_Not_Found","ErrorDisplay":""}"#;
    match decode_upstream_get(body) {
        Err(Error::UpstreamFailed { code, info, .. }) => {
            assert_eq!(code, 40009);
            assert_eq!(&*info, "Err_Profile_Tag_Not_Found");
        }
        other => panic!("expected UpstreamFailed, got {other:?}"),
    }
    assert!(matches!(
        decode_upstream_get(b"<html>"),
        Err(Error::UpstreamDecode(_))
    ));
}

#[test]
fn response_writer_builds_tencent_shape() {
    let nick = Tag::parse("Tag_Profile_IM_Nick").expect("standard");
    let value = RawValue::from_string("\"n\\\"1\"".to_string()).expect("raw");
    let mut w = ResponseWriter::with_capacity(64);
    w.begin_account("a\"1");
    w.tag_value(&nick, value.get());
    w.end_account();
    w.begin_account("empty");
    w.end_account();
    w.failed_account("bad", 40006, "Err_x");
    let body: serde_json::Value = serde_json::from_slice(&w.finish()).expect("valid JSON");
    assert_eq!(
        body,
        json!({"UserProfileItem":[
            {"To_Account":"a\"1","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"n\"1"}],"ResultCode":0,"ResultInfo":""},
            {"To_Account":"empty","ProfileItem":[],"ResultCode":0,"ResultInfo":""},
            {"To_Account":"bad","ResultCode":40006,"ResultInfo":"Err_x"}],
          "Fail_Account":["bad"],"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorDisplay":""})
    );
}

#[test]
fn a_repeated_account_entry_is_written_again_whole() {
    let nick = Tag::parse("Tag_Profile_IM_Nick").expect("standard");
    let mut w = ResponseWriter::with_capacity(64);
    let start = w.begin_account("a");
    w.tag_value(&nick, "\"n\"");
    let first = start..w.end_account();
    w.begin_account("b");
    w.end_account();
    w.repeat_account(first);
    let body: serde_json::Value = serde_json::from_slice(&w.finish()).expect("valid JSON");
    let a = json!({"To_Account":"a","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"n"}],"ResultCode":0,"ResultInfo":""});
    let b = json!({"To_Account":"b","ProfileItem":[],"ResultCode":0,"ResultInfo":""});
    assert_eq!(body["UserProfileItem"], json!([a, b, a]));
}

#[test]
fn fail_account_is_absent_when_nothing_failed() {
    let mut w = ResponseWriter::with_capacity(64);
    w.begin_account("a");
    w.end_account();
    let text = String::from_utf8(w.finish()).expect("utf-8");
    assert!(!text.contains("Fail_Account"), "{text}");
}

#[test]
fn error_body_is_tencent_envelope() {
    let body: serde_json::Value =
        serde_json::from_slice(&encode_error(60007, "slow down", "")).expect("json");
    assert_eq!(
        body,
        json!({"ActionStatus":"FAIL","ErrorCode":60007,"ErrorInfo":"slow down","ErrorDisplay":""})
    );
}

#[test]
fn arrays_of_strings_split_by_scanning_match_serde_json() {
    let cases = [
        r#"["a","b"]"#,
        " [ \"a\" ,\n\t\"b\" ] ",
        r#"[]"#,
        r#"[ ]"#,
        r#"["用户😀",""]"#,
        r#"["a\"b","c"]"#,
        r#"["back\\slash"]"#,
        r#"["\u0041"]"#,
        r#"["a",1]"#,
        r#"["a",null]"#,
        r#""a""#,
        r#"{"a":"b"}"#,
        r#"[["a"]]"#,
    ];
    for json in cases {
        let raw: Box<RawValue> = serde_json::from_str(json).expect("valid JSON");
        let ours = super::strings(&raw).map_err(|e| e.to_string());
        let serde: Result<Vec<std::borrow::Cow<'_, str>>, _> =
            serde_json::from_str(raw.get()).map_err(|e| e.to_string());
        assert_eq!(ours, serde, "{json}");
    }
}
