//! A caller's list read, checked the way Tencent checks it (the row's [`Refusals`] codes) and
//! split into its ids and everything else: the options, canonical JSON that callers must share
//! to share an upstream call; and the body of a call for any ids under those options.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::apis::{IdsField, ListSpec, OptionKind, Refusals};
use crate::error::Error;

/// A checked request.
pub(super) struct ListRequest {
    /// Every field but the ids, as canonical JSON (keys sorted).
    pub options: Arc<str>,
    /// The same fields, to build upstream calls with.
    pub fields: Arc<Map<String, Value>>,
    /// The ids in request order, repeats kept.
    pub ids: Vec<Arc<str>>,
}

/// Checks `body` as `spec`'s request.
pub(super) fn decode(spec: &ListSpec, body: &[u8]) -> Result<ListRequest, Error> {
    let codes = &spec.refusals;
    let refuse = |code: i64, info: String| Error::Refused {
        code,
        info: Arc::from(info),
    };
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(refuse(
            codes.not_json,
            "request body is not a JSON object".into(),
        ));
    };
    // A scope (the group asked about) is checked before the ids, the rest after them.
    let is_scope = |kind: &OptionKind| matches!(kind, OptionKind::Scope { .. });
    for (name, kind) in spec.options.iter().filter(|(_, k)| is_scope(k)) {
        check_option(name, *kind, fields.get(*name), codes)?;
    }
    let (list, _) = ids_names(spec.ids);
    let ids = ids(spec, fields.remove(list), codes)?;
    for (name, kind) in spec.options.iter().filter(|(_, k)| !is_scope(k)) {
        check_option(name, *kind, fields.get(*name), codes)?;
    }
    // Sorted keys: the same options in any order are the same options.
    let sorted: BTreeMap<&String, &Value> = fields.iter().collect();
    let options = serde_json::to_string(&sorted).unwrap_or_default();
    Ok(ListRequest {
        options: Arc::from(options),
        fields: Arc::new(fields),
        ids,
    })
}

/// The body of an upstream call for `ids` under `fields`.
pub(super) fn call_body(spec: &ListSpec, fields: &Map<String, Value>, ids: &[Arc<str>]) -> Bytes {
    let mut body = fields.clone();
    let ids: Vec<Value> = match spec.ids {
        IdsField::Strings(_) => ids.iter().map(|id| Value::from(&**id)).collect(),
        IdsField::Objects { key, .. } => ids
            .iter()
            .map(|id| Value::Object(Map::from_iter([(key.to_owned(), Value::from(&**id))])))
            .collect(),
    };
    body.insert(ids_names(spec.ids).0.to_owned(), Value::Array(ids));
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

fn ids_names(field: IdsField) -> (&'static str, Option<&'static str>) {
    match field {
        IdsField::Strings(list) => (list, None),
        IdsField::Objects { list, key } => (list, Some(key)),
    }
}

fn ids(spec: &ListSpec, value: Option<Value>, codes: &Refusals) -> Result<Vec<Arc<str>>, Error> {
    let (list, key) = ids_names(spec.ids);
    let bad = |why: &str| Error::Refused {
        code: codes.bad_ids,
        info: Arc::from(format!("{list} {why}")),
    };
    let Some(Value::Array(items)) = value else {
        return Err(bad("is missing or not an array"));
    };
    if items.is_empty() {
        return Err(bad("is empty"));
    }
    let count = items.len();
    let ids = items
        .into_iter()
        .map(|item| {
            let id = match (key, item) {
                (None, Value::String(id)) => Some(id),
                (Some(key), Value::Object(mut object)) => match object.remove(key) {
                    Some(Value::String(id)) => Some(id),
                    _ => None,
                },
                _ => None,
            };
            match id {
                Some(id) if !id.is_empty() => Ok(Arc::from(id)),
                _ => Err(bad(match key {
                    None => "must hold non-empty strings only",
                    Some(_) => "must hold objects with a non-empty string id only",
                })),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if count > spec.max_ids {
        return Err(Error::Refused {
            code: codes.too_many,
            info: Arc::from(format!(
                "{list} has {} ids; at most {} are allowed",
                count, spec.max_ids
            )),
        });
    }
    Ok(ids)
}

fn check_option(
    name: &str,
    kind: OptionKind,
    value: Option<&Value>,
    codes: &Refusals,
) -> Result<(), Error> {
    let refuse = |code: i64, why: &str| Error::Refused {
        code,
        info: Arc::from(format!("{name} {why}")),
    };
    let names = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    match (kind, value) {
        (OptionKind::Scope { empty }, Some(Value::String(s))) if s.is_empty() => {
            Err(refuse(empty, "is empty"))
        }
        (OptionKind::Scope { .. }, Some(Value::String(_))) => Ok(()),
        (OptionKind::Scope { .. }, _) => Err(refuse(codes.bad_option, "must be a string")),
        (_, None) => Ok(()),
        (OptionKind::Flag, Some(v)) if matches!(v.as_u64(), Some(0 | 1)) => Ok(()),
        (OptionKind::Flag, Some(_)) => Err(refuse(codes.bad_option, "must be 0 or 1")),
        (OptionKind::Names, Some(v)) if names(v) => Ok(()),
        (OptionKind::Names, Some(_)) => {
            Err(refuse(codes.bad_option, "must be an array of strings"))
        }
        (OptionKind::Filters(checked), Some(Value::Object(filters)))
            if checked.iter().all(|f| filters.get(*f).is_none_or(names)) =>
        {
            Ok(())
        }
        (OptionKind::Filters(_), Some(_)) => Err(refuse(
            codes.bad_option,
            "must be an object of arrays of strings",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::{ACCOUNT_CHECK, QUERY_ONLINE_STATUS};

    fn code(result: Result<ListRequest, Error>) -> i64 {
        result.err().map_or(0, |e| e.code())
    }

    #[test]
    fn options_are_canonical_and_ids_kept_in_order() {
        let a = decode(
            &QUERY_ONLINE_STATUS,
            br#"{"IsNeedDetail":1,"To_Account":["b","a","b"],"IsReturnCustomStatus":0}"#,
        )
        .expect("valid");
        let b = decode(
            &QUERY_ONLINE_STATUS,
            br#"{"IsReturnCustomStatus":0,"To_Account":["c"],"IsNeedDetail":1}"#,
        )
        .expect("valid");
        assert_eq!(a.options, b.options);
        let ids: Vec<&str> = a.ids.iter().map(|id| &**id).collect();
        assert_eq!(ids, ["b", "a", "b"]);
        let body = call_body(&QUERY_ONLINE_STATUS, &a.fields, &a.ids[..2]);
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"IsNeedDetail":1,"IsReturnCustomStatus":0,"To_Account":["b","a"]})
        );
    }

    #[test]
    fn check_items_are_objects_naming_a_user() {
        let request = decode(
            &ACCOUNT_CHECK,
            br#"{"CheckItem":[{"UserID":"u1"},{"UserID":"u2"}]}"#,
        )
        .expect("valid");
        let body = call_body(&ACCOUNT_CHECK, &request.fields, &request.ids);
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"CheckItem":[{"UserID":"u1"},{"UserID":"u2"}]})
        );
        assert_eq!(
            code(decode(&ACCOUNT_CHECK, br#"{"CheckItem":["u1"]}"#)),
            70402
        );
        assert_eq!(
            code(decode(&ACCOUNT_CHECK, br#"{"CheckItem":[{"UserID":""}]}"#)),
            70402
        );
    }

    #[test]
    fn bad_requests_get_the_apis_own_codes() {
        let many: Vec<String> = (0..501).map(|i| format!("u{i}")).collect();
        let too_many = serde_json::json!({ "To_Account": many }).to_string();
        for (body, expected) in [
            (&b"[1]"[..], 90001),
            (b"not json", 90001),
            (b"{}", 90003),
            (br#"{"To_Account":[]}"#, 90003),
            (br#"{"To_Account":"a"}"#, 90003),
            (br#"{"To_Account":["a",1]}"#, 90003),
            (too_many.as_bytes(), 90011),
            (br#"{"To_Account":["a"],"IsNeedDetail":2}"#, 90010),
            (br#"{"To_Account":["a"],"IsNeedDetail":"1"}"#, 90010),
        ] {
            assert_eq!(
                code(decode(&QUERY_ONLINE_STATUS, body)),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// portrait_get's row refuses what the portrait pipeline refuses, with the same codes.
    #[test]
    fn portrait_gets_row_refuses_as_its_own_pipeline_does() {
        use crate::apis::PORTRAIT_GET_ROW;
        let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
        let too_many = serde_json::json!({ "To_Account": many, "TagList": ["a"] }).to_string();
        let as_pipeline = [
            (too_many.as_bytes(), Error::TooManyAccounts(101).code()),
            (
                &br#"{"To_Account":[],"TagList":["a"]}"#[..],
                Error::MissingAccounts.code(),
            ),
            (b"not json", Error::InvalidJson(Arc::from("")).code()),
        ];
        for (body, expected) in as_pipeline {
            let refused = code(decode(&PORTRAIT_GET_ROW, body));
            assert_eq!(refused, expected, "{}", String::from_utf8_lossy(body));
        }
        let fine = br#"{"To_Account":["a","b"],"TagList":["Tag_Profile_IM_Nick"]}"#;
        assert!(decode(&PORTRAIT_GET_ROW, fine).is_ok());
    }
}
