//! The usual `portrait_get` body split in one pass, without serde: one object whose only members
//! are `To_Account` and `TagList`, each once, each an array of strings without escapes.
//!
//! Such a body is split by scanning for its quotes, and its strings are borrowed as they are. A
//! body with no backslash and no control character at all (one vectorised pass; the usual body
//! has neither) has each string's end found by memchr alone.
//! Whatever else (escapes, other members or types, a repeated member, bad UTF-8, a control
//! character in a string, anything after the object) is not this path's business: it returns
//! `None`, and serde_json decodes the body (`wire.rs`), with its exact errors. For what it
//! accepts it gives what serde_json gives (tests below and the fuzz target check both).

use std::borrow::Cow;

use super::MAX_ACCOUNTS_PER_REQUEST;

/// Room made up front for a `TagList` (the reference states no limit; callers ask for a few).
const TAGS_EXPECTED: usize = 16;

/// `To_Account` and `TagList` of a body of the usual shape; `None` for any other body.
pub(super) fn split(body: &[u8]) -> Option<(Vec<Cow<'_, str>>, Vec<&str>)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut scan = Scan {
        text,
        at: 0,
        clean: is_clean(body),
    };
    scan.expect(b'{')?;
    let (mut accounts, mut tags) = (None, None);
    loop {
        let key = scan.string()?;
        scan.expect(b':')?;
        match key {
            "To_Account" if accounts.is_none() => {
                accounts = Some(scan.strings(MAX_ACCOUNTS_PER_REQUEST, Cow::Borrowed)?);
            }
            "TagList" if tags.is_none() => tags = Some(scan.strings(TAGS_EXPECTED, |s| s)?),
            _ => return None,
        }
        match scan.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    scan.skip_whitespace();
    (scan.at == body.len()).then_some(())?;
    Some((accounts?, tags?))
}

/// Whether `body` has neither a backslash nor a control character (whitespace included): a
/// branch-free fold the compiler vectorises.
fn is_clean(body: &[u8]) -> bool {
    !body
        .iter()
        .fold(false, |dirty, &b| dirty | (b < 0x20) | (b == b'\\'))
}

/// A position in the body, which is valid UTF-8.
struct Scan<'a> {
    text: &'a str,
    at: usize,
    /// The body has no backslash and no control character: a string ends at the next quote.
    clean: bool,
}

impl<'a> Scan<'a> {
    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        while bytes
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        self.skip_whitespace();
        let byte = *self.text.as_bytes().get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = &self.text.as_bytes()[self.at..];
        let len = if self.clean {
            memchr::memchr(b'"', rest)?
        } else {
            let len = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            (rest[len] == b'"').then_some(len)?
        };
        // Both ends sit next to an ASCII quote, so both are character boundaries.
        let string = self.text.get(self.at..self.at + len)?;
        self.at += len + 1;
        Some(string)
    }

    /// An array of such strings, each made a `T` by `make`, in a vector with room for up to
    /// `expected` of them (or as many as the rest of the body can hold, if fewer).
    fn strings<T>(&mut self, expected: usize, make: impl Fn(&'a str) -> T) -> Option<Vec<T>> {
        self.expect(b'[')?;
        // Each string takes at least three bytes: two quotes and a separator.
        let room = (self.text.len() - self.at) / 3 + 1;
        let mut out = Vec::with_capacity(expected.min(room));
        self.skip_whitespace();
        if self.text.as_bytes().get(self.at) == Some(&b']') {
            self.at += 1;
            return Some(out);
        }
        loop {
            out.push(make(self.string()?));
            match self.next()? {
                b',' => continue,
                b']' => return Some(out),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use proptest::prelude::*;
    use serde::Deserialize;

    use super::split;

    /// What serde_json makes of a body, as the slow path reads it (the oracle of these tests).
    fn by_serde(body: &[u8]) -> Option<(Vec<String>, Vec<String>)> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            #[serde(rename = "To_Account")]
            accounts: Vec<String>,
            #[serde(rename = "TagList")]
            tags: Vec<String>,
        }
        let body: Body = serde_json::from_slice(body).ok()?;
        Some((body.accounts, body.tags))
    }

    fn owned(split: (Vec<Cow<'_, str>>, Vec<&str>)) -> (Vec<String>, Vec<String>) {
        let accounts = split.0.into_iter().map(Cow::into_owned).collect();
        (accounts, split.1.into_iter().map(str::to_owned).collect())
    }

    #[test]
    fn the_usual_bodies_are_split_as_serde_reads_them() {
        let bodies: [&[u8]; 6] = [
            br#"{"To_Account":["a","b"],"TagList":["Tag_Profile_IM_Nick"]}"#,
            br#" { "TagList" : [ "t" ] , "To_Account" : [ "a" , "a" ] } "#,
            b"{\"To_Account\":[\"\xe7\x94\xa8\xe6\x88\xb7\"],\"TagList\":[]}\n",
            br#"{"To_Account":[],"TagList":["t"]}"#,
            br#"{"To_Account":[""],"TagList":[""]}"#,
            b"\t\r\n{\"To_Account\":[\"x\"],\"TagList\":[\"y\"]}",
        ];
        for body in bodies {
            let text = String::from_utf8_lossy(body);
            let split = split(body).unwrap_or_else(|| panic!("not split: {text}"));
            assert_eq!(Some(owned(split)), by_serde(body), "{text}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        let bodies: [&[u8]; 16] = [
            br#"{"To_Account":["a\"b"],"TagList":["t"]}"#,
            br#"{"To_Account":["\u0061"],"TagList":["t"]}"#,
            br#"{"To\u005fAccount":["a"],"TagList":["t"]}"#,
            br#"{"To_Account":["a"],"TagList":["t"],"Other":1}"#,
            br#"{"To_Account":["a"],"To_Account":["b"],"TagList":["t"]}"#,
            br#"{"To_Account":["a"]}"#,
            br#"{"To_Account":["a"],"TagList":["t"]} x"#,
            br#"{"To_Account":["a"],"TagList":["t"]}{}"#,
            br#"{"To_Account":["a",],"TagList":["t"]}"#,
            br#"{"To_Account":["a"],"TagList":["t"],}"#,
            br#"{"To_Account":[1],"TagList":["t"]}"#,
            br#"{"To_Account":"a","TagList":["t"]}"#,
            b"{\"To_Account\":[\"a\tb\"],\"TagList\":[\"t\"]}",
            b"{\"To_Account\":[\"\xff\"],\"TagList\":[\"t\"]}",
            br#"[["a"],["t"]]"#,
            br#"{"To_Account":["a"],"TagList":["t"]"#,
        ];
        for body in bodies {
            assert!(split(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
    }

    /// Bodies near the usual shape: mostly its two members in either order, with strings and
    /// separators drawn mostly from what it accepts and sometimes from what it must refuse; in
    /// half of them the separators have no control character (the clean path).
    fn near_usual_body() -> impl Strategy<Value = Vec<u8>> {
        let clean = prop::sample::select(vec!["", " ", "  "]);
        let mixed = prop::sample::select(vec!["", " ", "\n", "\t ", "\r\n"]);
        prop_oneof![near_usual_body_with(clean), near_usual_body_with(mixed)]
    }

    /// Bodies near the usual shape whose whitespace is drawn from `spaces`.
    fn near_usual_body_with(
        spaces: impl Strategy<Value = &'static str> + Clone + 'static,
    ) -> impl Strategy<Value = Vec<u8>> {
        let plain = prop::sample::select(vec![
            "\"a\"",
            "\"user_1\"",
            "\"\"",
            "\"\u{7528}\"",
            "\"Tag_Profile_IM_Nick\"",
        ]);
        let odd = prop::sample::select(vec!["\"a\\\"b\"", "\"\\u0061\"", "\"\t\"", "1", "null"]);
        let string = prop_oneof![6 => plain, 1 => odd];
        let array = prop::collection::vec(string, 0..4).prop_map(|items| items.join(","));
        let key = prop::sample::select(vec!["\"Other\"", "\"To\\u005fAccount\"", "\"TagList\""]);
        let ws = prop_oneof![8 => spaces, 1 => Just("x")];
        let member = |key: BoxedStrategy<&'static str>| {
            (key, ws.clone(), array.clone(), ws.clone())
                .prop_map(|(k, w1, a, w2)| format!("{k}{w1}:{w2}[{w1}{a}{w2}]"))
        };
        let usual = (
            member(Just("\"To_Account\"").boxed()),
            member(Just("\"TagList\"").boxed()),
            any::<bool>(),
        )
            .prop_map(|(accounts, tags, swap)| match swap {
                false => vec![accounts, tags],
                true => vec![tags, accounts],
            });
        let members = prop_oneof![
            4 => usual,
            1 => prop::collection::vec(member(key.boxed()), 0..4),
        ];
        (members, ws.clone(), ws)
            .prop_map(|(members, w1, w2)| format!("{w1}{{{}}}{w2}", members.join(",")).into_bytes())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn whatever_is_split_is_what_serde_reads(body in near_usual_body()) {
            if let Some(split) = split(&body) {
                prop_assert_eq!(Some(owned(split)), by_serde(&body));
            }
        }
    }
}
