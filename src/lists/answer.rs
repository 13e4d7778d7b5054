//! Upstream list answers split per id, and each caller's answer assembled from its ids'
//! entries: the envelope, then the row's arrays with the caller's entries in its own order
//! (an id asked twice answered twice, as Tencent answers a direct call).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::apis::{ListSpec, OptionKind};
use crate::cache::ListEntry;
use crate::error::Error;
use crate::wire;

/// One id's part of an upstream answer.
#[derive(Debug, Clone)]
pub(super) struct IdAnswer {
    /// The entry, in its array.
    pub entry: ListEntry,
    /// A per-id failure (`ErrorList`, or a non-zero `ResultCode` / `ErrorCode`): answered,
    /// never cached.
    pub failed: bool,
}

/// The fields of an entry that say whether it failed.
#[derive(serde::Deserialize)]
struct EntryCodes {
    #[serde(rename = "ResultCode", default)]
    result_code: i64,
    #[serde(rename = "ErrorCode", default)]
    error_code: i64,
}

/// Splits an upstream answer of `spec` per id. A whole-call failure is that error; an id the
/// upstream left out has no entry.
pub(super) fn split(spec: &ListSpec, body: &[u8]) -> Result<HashMap<Arc<str>, IdAnswer>, Error> {
    let decode = |e: serde_json::Error| Error::UpstreamDecode(Arc::from(e.to_string()));
    wire::check_envelope(&wire::decode_envelope(body)?)?;
    let mut fields: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(decode)?;
    let mut by_id = HashMap::new();
    for (position, list) in spec.answer.iter().enumerate() {
        let Some(array) = fields.remove(list.name) else {
            continue;
        };
        let entries: Vec<Box<RawValue>> = serde_json::from_str(array.get()).map_err(decode)?;
        for raw in entries {
            let mut entry: BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(raw.get()).map_err(decode)?;
            let id: String = match entry.remove(list.id) {
                Some(id) => serde_json::from_str(id.get()).map_err(decode)?,
                None => continue,
            };
            let codes: EntryCodes = serde_json::from_str(raw.get()).map_err(decode)?;
            let failed = list.failures || codes.result_code != 0 || codes.error_code != 0;
            let entry = ListEntry {
                list: position as u8,
                raw: Arc::from(raw.get()),
            };
            by_id.insert(Arc::from(id), IdAnswer { entry, failed });
        }
    }
    Ok(by_id)
}

/// A caller's answer: its request's scope (the group asked about) echoed, then the entries of
/// its ids in its order (`None`: the upstream left it out).
pub(super) fn assemble<'a>(
    spec: &ListSpec,
    fields: &Map<String, Value>,
    entries: impl Iterator<Item = Option<&'a ListEntry>> + Clone,
) -> Bytes {
    let mut body = String::with_capacity(256);
    body.push_str(r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0"#);
    if spec.error_display {
        body.push_str(r#","ErrorDisplay":"""#);
    }
    for (name, kind) in spec.options {
        if let (OptionKind::Scope { .. }, Some(value)) = (kind, fields.get(*name)) {
            body.push_str(",\"");
            body.push_str(name);
            body.push_str("\":");
            body.push_str(&value.to_string());
        }
    }
    for (position, list) in spec.answer.iter().enumerate() {
        body.push_str(",\"");
        body.push_str(list.name);
        body.push_str("\":[");
        let mut first = true;
        for entry in entries.clone().flatten() {
            if usize::from(entry.list) != position {
                continue;
            }
            if !first {
                body.push(',');
            }
            first = false;
            body.push_str(&entry.raw);
        }
        body.push(']');
    }
    if let Some(name) = spec.failed_ids {
        push_failed_ids(&mut body, spec, name, entries);
    }
    body.push('}');
    Bytes::from(body)
}

/// `,"<name>":[ids]` naming the caller's failed entries in its order, when one failed.
fn push_failed_ids<'a>(
    body: &mut String,
    spec: &ListSpec,
    name: &str,
    entries: impl Iterator<Item = Option<&'a ListEntry>>,
) {
    let mut failed = Vec::new();
    for entry in entries.flatten() {
        let Some(list) = spec.answer.get(usize::from(entry.list)) else {
            continue;
        };
        let Ok(fields) = serde_json::from_str::<Map<String, Value>>(&entry.raw) else {
            continue;
        };
        let code = |field: &str| fields.get(field).and_then(Value::as_i64).unwrap_or(0);
        if list.failures || code("ResultCode") != 0 || code("ErrorCode") != 0 {
            failed.extend(fields.get(list.id).cloned());
        }
    }
    if !failed.is_empty() {
        body.push_str(",\"");
        body.push_str(name);
        body.push_str("\":");
        body.push_str(&Value::Array(failed).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::QUERY_ONLINE_STATUS;
    use serde_json::json;

    #[test]
    fn an_answer_is_split_per_id_and_reassembled_per_caller() {
        let upstream = br#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,
            "QueryResult":[{"To_Account":"a","Status":"Online"},{"To_Account":"b","Status":"Offline"}],
            "ErrorList":[{"To_Account":"x","ErrorCode":70107}]}"#;
        let split = split(&QUERY_ONLINE_STATUS, upstream).expect("split");
        assert!(!split["a"].failed && split["x"].failed);
        let mine = ["x", "b", "missing", "b"].map(|id| split.get(id).map(|a| &a.entry));
        let answer: Value = serde_json::from_slice(&assemble(
            &QUERY_ONLINE_STATUS,
            &Map::new(),
            mine.iter().copied(),
        ))
        .expect("json");
        assert_eq!(
            answer,
            json!({"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,
                "QueryResult":[{"To_Account":"b","Status":"Offline"},{"To_Account":"b","Status":"Offline"}],
                "ErrorList":[{"To_Account":"x","ErrorCode":70107}]})
        );
    }

    /// portrait_get as a row: one sim answer for everyone's accounts, split per id, assembles
    /// each caller's answer exactly as the sim answers that caller alone (failed accounts in
    /// `Fail_Account`, an account asked twice answered twice).
    #[tokio::test]
    async fn portrait_get_is_answered_from_its_row_as_tencent_answers_it() {
        use crate::apis::PORTRAIT_GET_ROW;
        use crate::sim::{Sim, SimConfig};
        let sim = Sim::start(SimConfig::default()).await.expect("sim");
        let tags = ["Tag_Profile_IM_Nick", "Tag_Profile_IM_Gender"];
        let everyone =
            json!({"To_Account": ["user1", "user2", "user13", "user3"], "TagList": tags});
        let upstream = sim.answer_portrait_get(everyone.to_string().as_bytes());
        let split = split(&PORTRAIT_GET_ROW, &upstream).expect("split");
        assert!(split["user13"].failed && !split["user2"].failed);
        for mine in [
            vec!["user13", "user2", "user2"],
            vec!["user3", "user1"],
            vec!["user13"],
        ] {
            let entries: Vec<_> = mine
                .iter()
                .map(|id| split.get(*id).map(|a| &a.entry))
                .collect();
            let request = json!({"To_Account": mine, "TagList": tags});
            let ours = assemble(&PORTRAIT_GET_ROW, &Map::new(), entries.iter().copied());
            let ours: Value = serde_json::from_slice(&ours).expect("json");
            let alone = sim.answer_portrait_get(request.to_string().as_bytes());
            let alone: Value = serde_json::from_slice(&alone).expect("json");
            assert_eq!(ours, alone, "{request}");
        }
        sim.shutdown().await;
    }

    #[test]
    fn a_whole_call_failure_is_the_upstreams_error() {
        let failed = br#"{"ActionStatus":"FAIL","ErrorInfo":"slow down","ErrorCode":60007}"#;
        let error = split(&QUERY_ONLINE_STATUS, failed).expect_err("failed");
        assert_eq!(error.code(), 60007);
        assert!(split(&QUERY_ONLINE_STATUS, b"<html>").is_err());
    }
}
