//! The house rules, read from `src/` as text: imports between top-level modules run one way
//! (no circle, however long), so each module can be read, tested and replaced on its own.
//!
//! A module's imports are every `crate::<module>` path in its files (inside `use` groups too),
//! with comments and string literals left out. The crate root (`lib.rs`, `main.rs`) may name
//! anything: it declares the modules. The report names each circle and the arrows in it, with
//! one file per arrow, so the one who closed it knows where to look.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> (module it names -> a file that names it).
type Graph = BTreeMap<String, BTreeMap<String, PathBuf>>;

#[test]
fn top_level_modules_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() > 5,
        "read too few modules from {}",
        src.display()
    );
    let circles: Vec<Vec<String>> = strongly_connected(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .collect();
    let report: Vec<String> = circles
        .iter()
        .map(|circle| describe(circle, &graph))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles between top-level modules:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_reader_finds_arrows_and_circles() {
    // The checker itself: a circle of three through a `use` group and a plain path is found.
    let text =
        "use crate::{b::X, c};\nfn f() { crate::b::y(); } // crate::z\nlet s = \"crate::q\";";
    assert_eq!(
        named_modules(text),
        ["b", "c"]
            .map(String::from)
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph
            .entry(from.into())
            .or_default()
            .insert(to.into(), PathBuf::from(format!("{from}.rs")));
    }
    graph.entry("d".into()).or_default();
    let circles: Vec<_> = strongly_connected(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
    assert_eq!(circles, vec![vec!["a", "b", "c"]]);
}

fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src");
        let Some(module) = top_level_module(relative) else {
            continue; // the crate root
        };
        let text = std::fs::read_to_string(&file).expect("source is readable");
        let arrows = graph.entry(module.clone()).or_default();
        for named in named_modules(&text) {
            if named != module {
                arrows.entry(named).or_insert_with(|| relative.to_owned());
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `fleet/tier.rs` and `fleet.rs` are `fleet`; `lib.rs` and `main.rs` are the root.
fn top_level_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Every module named as `crate::<module>`, in plain paths and in `use crate::{...}` groups.
fn named_modules(text: &str) -> BTreeSet<String> {
    let code = strip_comments_and_strings(text);
    let mut named = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue; // `$crate::` or `my_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            named.extend(group_heads(&group[..end]));
        } else if let Some(ident) = leading_ident(rest) {
            named.insert(ident);
        }
    }
    named
}

/// Index of the `}` closing a group whose `{` was just consumed.
fn matching_brace(group: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    group.len()
}

/// The first identifier of each top-level item of a `use` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => item_start = true,
            c if item_start && depth == 0 && !c.is_whitespace() => {
                item_start = false;
                if let Some(ident) = leading_ident(&group[i..]) {
                    heads.push(ident);
                }
            }
            _ => {}
        }
    }
    heads.retain(|h| h != "self");
    heads
}

fn leading_ident(text: &str) -> Option<String> {
    let ident: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!ident.is_empty()).then_some(ident)
}

/// The text with `//` and `/* */` comments and `"..."` strings blanked (raw strings with `#`
/// are blanked up to their closing quote and hashes).
fn strip_comments_and_strings(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |end| end + 2);
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = &rest[hashes + 2..];
            i += hashes + 2 + body.find(&close).map_or(body.len(), |e| e + close.len());
        } else if let Some(body) = rest.strip_prefix('"') {
            i += 1 + quoted_len(body);
        } else if rest.starts_with('\'') && rest[1..].chars().nth(1) == Some('\'') {
            i += 1 + rest[1..].chars().next().map_or(0, char::len_utf8) + 1; // 'x'
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"` or `r#..#"`: the number of hashes.
fn raw_string_start(text: &str) -> Option<usize> {
    let after_r = text.strip_prefix('r')?;
    let hashes = after_r.chars().take_while(|c| *c == '#').count();
    after_r[hashes..].starts_with('"').then_some(hashes)
}

/// Length of a string's body and its closing quote, escapes skipped.
fn quoted_len(body: &str) -> usize {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return i + 1,
            _ => escaped = false,
        }
    }
    body.len()
}

/// Tarjan's strongly connected components, each sorted, in a stable order.
fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, node: &'a str) {
        let n = s.index.len();
        s.index.insert(node, n);
        s.low.insert(node, n);
        s.stack.push(node);
        s.on_stack.insert(node);
        let graph = s.graph;
        for next in graph.get(node).into_iter().flat_map(|arrows| arrows.keys()) {
            let next = next.as_str();
            if !graph.contains_key(next) {
                continue; // a name that is not a module of ours (e.g. a macro path)
            }
            if !s.index.contains_key(next) {
                visit(s, next);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            while let Some(top) = s.stack.pop() {
                s.on_stack.remove(top);
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            component.sort();
            s.components.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.components.sort();
    state.components
}

fn describe(circle: &[String], graph: &Graph) -> String {
    let members: BTreeSet<&str> = circle.iter().map(String::as_str).collect();
    let mut lines = vec![format!("  circle: {}", circle.join(", "))];
    for from in circle {
        for (to, file) in &graph[from] {
            if members.contains(to.as_str()) {
                lines.push(format!("    {from} -> {to}   (src/{})", file.display()));
            }
        }
    }
    lines.join("\n")
}
