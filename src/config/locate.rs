//! Line numbers for config keys.
//!
//! serde_yaml_ng reports a location only for its own errors, and values carry no spans, so
//! semantic errors and unknown-key warnings find their line with this small scan of the text.
//! It understands block-style YAML (the style every go2rtc example uses): indentation, `- `
//! items, quoted keys, comments, block scalars and document markers. Keys inside flow
//! collections (`{a: 1}`) are not seen; lookups then fall back to the nearest enclosing key
//! that is, which for a one-line flow mapping is still the right line.

use std::collections::HashMap;

/// One step of a path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Seg {
    Key(String),
    Item(usize),
}

/// Builds a path of mapping keys.
pub(super) fn keys(path: &[&str]) -> Vec<Seg> {
    path.iter().map(|k| Seg::Key((*k).to_owned())).collect()
}

/// Every block-style key (and sequence item) of a text, with the lines it appears on.
#[derive(Debug, Default)]
pub(super) struct KeyLines {
    lines: HashMap<Vec<Seg>, Vec<usize>>,
}

impl KeyLines {
    pub(super) fn scan(text: &str) -> Self {
        let mut lines: HashMap<Vec<Seg>, Vec<usize>> = HashMap::new();
        let mut scanner = Scanner::default();
        for (i, line) in text_lines(text).enumerate() {
            scanner.feed(line, |path| {
                lines.entry(path).or_default().push(i + 1);
            });
        }
        KeyLines { lines }
    }

    /// The 1-based line of `path`, else of its nearest enclosing path found, else 0.
    pub(super) fn line_of(&self, path: &[Seg]) -> usize {
        (1..=path.len())
            .rev()
            .find_map(|len| {
                self.lines
                    .get(&path[..len])
                    .and_then(|l| l.first().copied())
            })
            .unwrap_or(0)
    }

    /// The line of the `n`th (0-based) occurrence of exactly `path`, for duplicate keys.
    pub(super) fn nth_line_of(&self, path: &[Seg], n: usize) -> Option<usize> {
        self.lines.get(path).and_then(|l| l.get(n).copied())
    }
}

/// The dotted key path (mapping keys only) in effect at `line`, for errors that come with
/// a line but no key, such as YAML syntax errors.
pub(super) fn key_at(text: &str, line: usize) -> Option<String> {
    if line == 0 {
        return None;
    }
    let mut scanner = Scanner::default();
    for l in text_lines(text).take(line) {
        scanner.feed(l, |_| {});
    }
    let keys: Vec<&str> = scanner
        .stack
        .iter()
        .filter_map(|f| match &f.seg {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Item(_) => None,
        })
        .take(MAX_DEPTH)
        .collect();
    (!keys.is_empty()).then(|| keys.join("."))
}

/// Lines as libyaml counts them for the usual `\n` / `\r\n` endings, without a leading BOM.
fn text_lines(text: &str) -> impl Iterator<Item = &str> {
    text.strip_prefix('\u{feff}').unwrap_or(text).lines()
}

/// Deepest path recorded.
const MAX_DEPTH: usize = 8;

#[derive(Debug)]
struct Frame {
    /// Column of the key, or of the `-` of an item.
    col: usize,
    seg: Seg,
}

#[derive(Debug, Default)]
struct Scanner {
    stack: Vec<Frame>,
    /// Inside a block scalar (`key: |`): lines indented deeper than this are its text.
    block_scalar: Option<usize>,
}

impl Scanner {
    /// Consumes one line; `found` gets the path of every key or item the line starts, down
    /// to [`MAX_DEPTH`].
    fn feed(&mut self, line: &str, mut found: impl FnMut(Vec<Seg>)) {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        let content = content.trim_end();
        if let Some(limit) = self.block_scalar {
            if content.is_empty() || indent > limit {
                return;
            }
            self.block_scalar = None;
        }
        if content.is_empty() || content.starts_with('#') {
            return;
        }
        if indent == 0 {
            if is_marker(content, "---") || is_marker(content, "...") {
                self.stack.clear();
                return;
            }
            if content.starts_with('%') {
                return;
            }
        }

        let mut col = indent;
        let mut rest = content;
        let mut item_col = None;
        while rest == "-" || rest.starts_with("- ") || rest.starts_with("-\t") {
            let index = self.pop_for_item(col);
            self.stack.push(Frame {
                col,
                seg: Seg::Item(index),
            });
            self.report(&mut found);
            item_col = Some(col);
            let after = &rest[1..];
            let after_trimmed = after.trim_start_matches([' ', '\t']);
            col += 1 + after.len() - after_trimmed.len();
            rest = after_trimmed;
        }
        if rest.is_empty() || rest.starts_with('#') {
            return;
        }

        if let Some((key, value)) = split_key(rest) {
            while self.stack.last().is_some_and(|f| f.col >= col) {
                self.stack.pop();
            }
            self.stack.push(Frame {
                col,
                seg: Seg::Key(key),
            });
            self.report(&mut found);
            if starts_block_scalar(value) {
                self.block_scalar = Some(col);
            }
        } else if let Some(item_col) = item_col {
            if starts_block_scalar(rest) {
                self.block_scalar = Some(item_col);
            }
        } else {
            // A bare scalar line: continuation text, or junk that ends deeper blocks.
            while self.stack.last().is_some_and(|f| f.col > indent) {
                self.stack.pop();
            }
        }
    }

    /// Pops to the parent of an item at `col` and returns the item's index in its sequence.
    fn pop_for_item(&mut self, col: usize) -> usize {
        let mut next = 0;
        while let Some(top) = self.stack.last() {
            match top.seg {
                // Items may sit at the same column as their parent key, so only a sibling
                // item at this column (or anything deeper) ends here.
                Seg::Item(i) if top.col == col => next = i + 1,
                _ if top.col > col => {}
                _ => break,
            }
            self.stack.pop();
        }
        next
    }

    fn report(&self, found: &mut impl FnMut(Vec<Seg>)) {
        // Config paths are a few levels deep; copying deeper ones would make a text like
        // "- - - - ..." quadratic.
        if self.stack.len() <= MAX_DEPTH {
            found(self.stack.iter().map(|f| f.seg.clone()).collect());
        }
    }
}

fn is_marker(content: &str, marker: &str) -> bool {
    content
        .strip_prefix(marker)
        .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
}

/// Whether a value text (after `key:` or `- `) opens a block scalar (`|`, `>-`, `&a |`, ...).
fn starts_block_scalar(value: &str) -> bool {
    value
        .split_whitespace()
        .find(|t| !t.starts_with('&') && !t.starts_with('!'))
        .is_some_and(|t| t.starts_with('|') || t.starts_with('>'))
}

/// Splits `key: value` into the key text and what follows the `:`; None if the line does
/// not start with a simple (plain or quoted) mapping key.
fn split_key(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    let (key, rest) = match bytes.first()? {
        b'"' => {
            let end = closing_double_quote(s)?;
            (unescape_double(&s[1..end]), &s[end + 1..])
        }
        b'\'' => {
            let end = closing_single_quote(s)?;
            (s[1..end].replace("''", "'"), &s[end + 1..])
        }
        // Flow collections, complex keys, anchors, aliases, tags and other indicators.
        b'[' | b'{' | b']' | b'}' | b',' | b'?' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%'
        | b'@' | b'`' | b'#' => return None,
        _ => {
            let colon = plain_key_colon(bytes)?;
            let key = s[..colon].trim_end();
            if key.is_empty() {
                return None;
            }
            (key.to_owned(), &s[colon..])
        }
    };
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix(':')?;
    Some((key, rest))
}

/// Index of the `:` that ends a plain key: the first one followed by a blank or the line end,
/// unless a comment starts first.
fn plain_key_colon(bytes: &[u8]) -> Option<usize> {
    for (i, &b) in bytes.iter().enumerate() {
        let blank_before = i > 0 && matches!(bytes[i - 1], b' ' | b'\t');
        match b {
            b'#' if blank_before => return None,
            b':' if matches!(bytes.get(i + 1), None | Some(b' ' | b'\t')) => return Some(i),
            _ => {}
        }
    }
    None
}

fn closing_double_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn closing_single_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The common escapes only; a key using rarer ones simply won't be found (line falls back).
fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(c @ ('"' | '\\' | '/' | ' ')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The line where flow collections (`[`, `{`) first nest deeper than `limit`, if they do.
///
/// libyaml's scanner slows down quadratically with flow depth (a 1 MiB `[[[[...` takes
/// minutes), while serde_yaml_ng refuses anything deeper than 128 levels anyway, so such
/// input is turned away before it reaches libyaml. The count follows YAML closely enough:
/// brackets in comments, quoted scalars, block scalars and block-context plain scalars (URLs)
/// are not counted, and in flow context every unquoted bracket is structure. Where it errs,
/// it counts too few, so nothing parseable is refused.
pub(super) fn flow_too_deep(text: &str, limit: usize) -> Option<usize> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut depth = 0usize;
    let mut quote = Quote::None;
    let mut block_scalar: Option<usize> = None;
    for (i, line) in text_lines(text).enumerate() {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if depth == 0 && quote == Quote::None {
            if let Some(limit) = block_scalar {
                if content.trim().is_empty() || indent > limit {
                    continue;
                }
                block_scalar = None;
            }
        }
        let bytes = line.as_bytes();
        // In block context: whether the next character would start a node.
        let mut node_start = true;
        let mut j = indent;
        while j < bytes.len() {
            let b = bytes[j];
            let prev = j.checked_sub(1).map(|p| bytes[p]);
            let next = bytes.get(j + 1).copied();
            let blank_next = matches!(next, None | Some(b' ' | b'\t'));
            j += 1;
            match quote {
                Quote::Double => {
                    match b {
                        b'\\' => j += 1,
                        b'"' => quote = Quote::None,
                        _ => {}
                    }
                    continue;
                }
                Quote::Single => {
                    if b == b'\'' {
                        if next == Some(b'\'') {
                            j += 1;
                        } else {
                            quote = Quote::None;
                        }
                    }
                    continue;
                }
                Quote::None => {}
            }
            if b == b'#' && matches!(prev, None | Some(b' ' | b'\t')) {
                break;
            }
            if depth > 0 {
                match b {
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > limit {
                            return Some(i + 1);
                        }
                    }
                    b']' | b'}' => depth -= 1,
                    b'"' | b'\'' => {
                        let scalar_start = bytes[..j - 1]
                            .iter()
                            .rev()
                            .find(|c| !matches!(c, b' ' | b'\t'))
                            .is_none_or(|c| matches!(c, b'[' | b'{' | b',' | b':'));
                        if scalar_start {
                            quote = if b == b'"' {
                                Quote::Double
                            } else {
                                Quote::Single
                            };
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match b {
                b' ' | b'\t' => {}
                b'[' | b'{' if node_start => {
                    depth = 1;
                    if depth > limit {
                        return Some(i + 1);
                    }
                }
                b'"' if node_start => quote = Quote::Double,
                b'\'' if node_start => quote = Quote::Single,
                b'|' | b'>' if node_start => {
                    block_scalar = Some(indent);
                    break;
                }
                // Anchors and tags come before the node they label.
                b'&' | b'!' if node_start => {
                    while j < bytes.len() && !matches!(bytes[j], b' ' | b'\t') {
                        j += 1;
                    }
                }
                b'-' | b'?' | b':' if blank_next => node_start = true,
                _ => node_start = false,
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, path: &[&str]) -> usize {
        KeyLines::scan(text).line_of(&keys(path))
    }

    #[test]
    fn finds_nested_keys_and_items() {
        let text = "\
# comment
streams:
  cam1: rtsp://a
  \"cam 2\":
    - rtsp://b   # x: y
    - ffmpeg:cam1#audio=opus
  'it''s': x
rtsp:
  listen: \":8554\"
";
        assert_eq!(line(text, &["streams"]), 2);
        assert_eq!(line(text, &["streams", "cam1"]), 3);
        assert_eq!(line(text, &["streams", "cam 2"]), 4);
        assert_eq!(line(text, &["streams", "it's"]), 7);
        assert_eq!(line(text, &["rtsp", "listen"]), 9);
        let kl = KeyLines::scan(text);
        let mut item = keys(&["streams", "cam 2"]);
        item.push(Seg::Item(1));
        assert_eq!(kl.line_of(&item), 6);
        // Unknown leaf: falls back to the parent; unknown root: 0.
        assert_eq!(line(text, &["rtsp", "nope"]), 8);
        assert_eq!(line(text, &["nope"]), 0);
    }

    #[test]
    fn items_at_parent_indent_and_block_scalars() {
        let text = "\
a:
- x
- k: v
  j: |
    not: a key
    - nor an item
b: 1
";
        let kl = KeyLines::scan(text);
        let path = [Seg::Key("a".into()), Seg::Item(1), Seg::Key("j".into())];
        assert_eq!(kl.line_of(&path), 4);
        assert_eq!(line(text, &["b"]), 7);
        let mut inside = path.to_vec();
        inside.push(Seg::Key("not".into()));
        assert_eq!(kl.line_of(&inside), 4, "block scalar text is not keys");
        assert_eq!(key_at(text, 5).as_deref(), Some("a.j"));
        assert_eq!(key_at(text, 7).as_deref(), Some("b"));
        assert_eq!(key_at(text, 0), None);
    }

    #[test]
    fn duplicates_and_documents() {
        let text = "a: 1\na: 2\n---\na: 3\n";
        let kl = KeyLines::scan(text);
        assert_eq!(kl.nth_line_of(&keys(&["a"]), 1), Some(2));
        assert_eq!(kl.nth_line_of(&keys(&["a"]), 2), Some(4));
        assert_eq!(kl.nth_line_of(&keys(&["a"]), 3), None);
    }

    #[test]
    fn flow_depth() {
        assert_eq!(flow_too_deep("a: [[[b]]]\n", 3), None);
        assert_eq!(flow_too_deep("a: [[[[b]]]]\n", 3), Some(1));
        assert_eq!(flow_too_deep("a: {x: [\n  [\n   [[b]]]]}\n", 3), Some(3));
        // Not flow: plain scalars, quotes, comments, block scalars.
        assert_eq!(flow_too_deep("a: x[[[[[[\nb: y{{{{{{\n", 3), None);
        assert_eq!(flow_too_deep("a: [\"[[[[\", '{{{{', x]\n", 3), None);
        assert_eq!(flow_too_deep("a: 1 # [[[[[[\n", 3), None);
        assert_eq!(flow_too_deep("a: |\n  [[[[[[\n  {{{{{{\nb: [1]\n", 3), None);
        assert_eq!(flow_too_deep("- &x !t [[[[b]]]]\n", 3), Some(1));
        // Closed collections don't add up.
        assert_eq!(flow_too_deep(&"a: [[[1]]]\n".repeat(100), 3), None);
    }

    #[test]
    fn plain_scalars_with_colons_are_not_keys() {
        assert_eq!(split_key("rtsp://a:b@c/d"), None);
        assert_eq!(split_key("foo # bar: baz"), None);
        assert_eq!(split_key("x:y: z").map(|k| k.0), Some("x:y".into()));
        assert_eq!(split_key("key:").map(|k| k.0), Some("key".into()));
        assert_eq!(split_key("\"a\\\"b\": 1").map(|k| k.0), Some("a\"b".into()));
        assert_eq!(split_key("{a: 1}"), None);
    }
}
