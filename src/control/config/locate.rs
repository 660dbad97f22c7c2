//! Key path recovery: which TOML key a byte offset of a document belongs to, for
//! errors `toml` reports without one (see the module doc of [`super`]).

use std::collections::HashMap;

/// One step of a key path.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn format_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Nesting deeper than this is not followed (toml itself refuses far less).
const MAX_LOCATOR_DEPTH: usize = 128;

/// The key path (`port[1].addresses[0]`) of the innermost key or value at byte `offset`
/// of a syntactically valid TOML document; for a table header, the table's path. Empty
/// when the offset is outside any key or value.
///
/// A small scanner: headers (`[a.b]`, `[[a]]` with per-parent element counting), dotted
/// keys, arrays, inline tables, all four string forms, comments. It never panics and always
/// advances, whatever the input.
pub(crate) fn key_path_at(text: &str, offset: usize) -> String {
    let mut loc = Locator {
        b: text.as_bytes(),
        pos: 0,
        target: offset,
        aot_counts: HashMap::new(),
    };
    loc.document().unwrap_or_default()
}

struct Locator<'a> {
    b: &'a [u8],
    pos: usize,
    target: usize,
    /// Elements seen so far of each array of tables, keyed by its resolved path.
    aot_counts: HashMap<String, usize>,
}

impl Locator<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.b.get(self.pos + ahead).copied()
    }
    fn starts_with(&self, s: &[u8]) -> bool {
        self.b.get(self.pos..).is_some_and(|r| r.starts_with(s))
    }
    fn hit(&self, start: usize) -> bool {
        (start..self.pos).contains(&self.target)
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn skip_blank(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.pos += 1,
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn document(&mut self) -> Option<String> {
        let mut table: Vec<Seg> = Vec::new();
        loop {
            self.skip_blank();
            let start = self.pos;
            match self.peek() {
                None => return None,
                Some(b'[') => {
                    let array = self.peek_at(1) == Some(b'[');
                    self.pos += if array { 2 } else { 1 };
                    let keys = self.key();
                    self.skip_spaces();
                    for _ in 0..if array { 2 } else { 1 } {
                        if self.peek() == Some(b']') {
                            self.pos += 1;
                        }
                    }
                    table = self.resolve_header(&keys, array);
                    if self.hit(start) {
                        return Some(format_path(&table));
                    }
                }
                Some(_) => {
                    let mut path = table.clone();
                    path.extend(self.key().into_iter().map(Seg::Key));
                    if self.hit(start) {
                        return Some(format_path(&path));
                    }
                    self.skip_spaces();
                    if self.peek() == Some(b'=') {
                        self.pos += 1;
                    }
                    self.skip_spaces();
                    if let Some(found) = self.value(&path, 0) {
                        return Some(found);
                    }
                }
            }
            if self.pos == start {
                self.pos += 1; // never stall on unexpected bytes
            }
        }
    }

    /// Path of a header; array-of-tables prefixes resolve to their latest element.
    fn resolve_header(&mut self, keys: &[String], array: bool) -> Vec<Seg> {
        let mut resolved = Vec::with_capacity(keys.len() + 2);
        for (i, k) in keys.iter().enumerate() {
            resolved.push(Seg::Key(k.clone()));
            let name = format_path(&resolved);
            if array && i + 1 == keys.len() {
                let count = self.aot_counts.entry(name).or_insert(0);
                resolved.push(Seg::Index(*count));
                *count += 1;
            } else if let Some(count) = self.aot_counts.get(&name) {
                resolved.push(Seg::Index(count.saturating_sub(1)));
            }
        }
        resolved
    }

    /// A dotted key; bare or quoted parts.
    fn key(&mut self) -> Vec<String> {
        let mut keys = Vec::new();
        loop {
            self.skip_spaces();
            let part = match self.peek() {
                Some(q @ (b'"' | b'\'')) => {
                    self.pos += 1;
                    let start = self.pos;
                    while let Some(c) = self.peek() {
                        if c == q || c == b'\n' {
                            break;
                        }
                        if c == b'\\' && q == b'"' {
                            self.pos += 1;
                        }
                        self.pos += 1;
                    }
                    let part = self
                        .b
                        .get(start..self.pos.min(self.b.len()))
                        .unwrap_or_default();
                    if self.peek() == Some(q) {
                        self.pos += 1;
                    }
                    String::from_utf8_lossy(part).into_owned()
                }
                _ => {
                    let start = self.pos;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                    {
                        self.pos += 1;
                    }
                    if start == self.pos {
                        return keys;
                    }
                    String::from_utf8_lossy(self.b.get(start..self.pos).unwrap_or_default())
                        .into_owned()
                }
            };
            keys.push(part);
            self.skip_spaces();
            if self.peek() == Some(b'.') {
                self.pos += 1;
            } else {
                return keys;
            }
        }
    }

    /// Scans one value; returns the path of the innermost value or key containing the target.
    fn value(&mut self, path: &[Seg], depth: usize) -> Option<String> {
        let start = self.pos;
        if depth > MAX_LOCATOR_DEPTH {
            return Some(format_path(path));
        }
        match self.peek() {
            Some(b'[') => {
                self.pos += 1;
                let mut index = 0;
                loop {
                    self.skip_blank();
                    match self.peek() {
                        None => break,
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b',') => {
                            self.pos += 1;
                            index += 1;
                        }
                        Some(_) => {
                            let before = self.pos;
                            let mut p = path.to_vec();
                            p.push(Seg::Index(index));
                            if let Some(found) = self.value(&p, depth + 1) {
                                return Some(found);
                            }
                            if self.pos == before {
                                self.pos += 1;
                            }
                        }
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.skip_blank();
                    match self.peek() {
                        None => break,
                        Some(b'}') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b',') => self.pos += 1,
                        Some(_) => {
                            let key_start = self.pos;
                            let mut p = path.to_vec();
                            p.extend(self.key().into_iter().map(Seg::Key));
                            if self.hit(key_start) {
                                return Some(format_path(&p));
                            }
                            self.skip_spaces();
                            if self.peek() == Some(b'=') {
                                self.pos += 1;
                            }
                            self.skip_spaces();
                            if let Some(found) = self.value(&p, depth + 1) {
                                return Some(found);
                            }
                            if self.pos == key_start {
                                self.pos += 1;
                            }
                        }
                    }
                }
            }
            Some(q @ (b'"' | b'\'')) => {
                let triple = [q, q, q];
                if self.starts_with(&triple) {
                    self.pos += 3;
                    loop {
                        match self.peek() {
                            None => break,
                            Some(b'\\') if q == b'"' => self.pos += 2,
                            Some(_) if self.starts_with(&triple) => {
                                self.pos += 3;
                                // Up to two quotes may end the content right before the delimiter.
                                for _ in 0..2 {
                                    if self.peek() == Some(q) {
                                        self.pos += 1;
                                    }
                                }
                                break;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                } else {
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None | Some(b'\n') => break,
                            Some(b'\\') if q == b'"' => self.pos += 2,
                            Some(c) if c == q => {
                                self.pos += 1;
                                break;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                }
            }
            Some(_) => {
                // Numbers, booleans, dates (which may contain a space): up to a delimiter.
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b'\n' | b'#' | b'\r')
                ) {
                    self.pos += 1;
                }
                // Trailing spaces are not part of the value.
                while self.pos > start && matches!(self.b.get(self.pos - 1), Some(b' ' | b'\t')) {
                    self.pos -= 1;
                }
                if self.pos == start {
                    return None;
                }
            }
            None => return None,
        }
        self.pos = self.pos.min(self.b.len());
        self.hit(start).then(|| format_path(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_locator() {
        let doc = "a = 1\n[t]\nx.y = [1, [2, 3], {k = \"v\", 'q' = [4]}]\n[[arr]]\nz = '''\nmulti ] \" line'''\n[[arr]]\nz = 5 # c ]\n[[arr.sub]]\nw = \"s\\\"]\"\n[arr.more]\nm = 1\n[[arr]]\n\"quoted.key\" = 1979-05-27 07:32:00\n";
        assert!(doc.parse::<toml::Table>().is_ok());
        let at = |needle: &str| key_path_at(doc, doc.find(needle).unwrap());
        assert_eq!(at("a ="), "a");
        assert_eq!(at("1\n"), "a");
        assert_eq!(at("[t]"), "t");
        assert_eq!(at("x.y"), "t.x.y");
        assert_eq!(at("[1,"), "t.x.y");
        assert_eq!(at("1, ["), "t.x.y[0]");
        assert_eq!(at("3]"), "t.x.y[1][1]");
        assert_eq!(at("k ="), "t.x.y[2].k");
        assert_eq!(at("\"v\""), "t.x.y[2].k");
        assert_eq!(at("4]"), "t.x.y[2].q[0]");
        assert_eq!(at("multi"), "arr[0].z");
        assert_eq!(at("5 #"), "arr[1].z");
        assert_eq!(at("# c"), "");
        assert_eq!(at("[[arr.sub]]"), "arr[1].sub[0]");
        assert_eq!(at("\"s\\"), "arr[1].sub[0].w");
        assert_eq!(at("[arr.more]"), "arr[1].more");
        assert_eq!(at("m = 1"), "arr[1].more.m");
        assert_eq!(at("07:32"), "arr[2].quoted.key");
        assert_eq!(key_path_at(doc, doc.len() + 10), "");
    }
}
