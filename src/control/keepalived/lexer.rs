//! keepalived.conf's lexical layer: files, `include`, comments, quotes,
//! `$PARAMETER` substitution and `@config-id` conditional lines, down to a
//! flat list of words and braces, each with its file and line.
//!
//! keepalived's syntax is line based: a keyword and its values share one
//! line, and `{` `}` open and close blocks (a `{` may also start the next
//! line). `include` is resolved here, at any depth of the block structure,
//! as keepalived does: the included files' words are spliced in place.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::KaError;

/// Nesting of `include`s followed (keepalived stops at a similar depth).
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// Files read in all, `include`d ones counted.
pub const MAX_FILES: usize = 1024;
/// Largest single file.
pub const MAX_FILE_BYTES: u64 = crate::control::config::MAX_CONFIG_BYTES;
/// Depth of `$PARAMETER` substitution (values may name parameters).
const MAX_SUBSTITUTION_DEPTH: usize = 16;
/// Longest line after substitution (parameters naming others twice would
/// otherwise grow a line exponentially).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Where a word came from: an index into [`Lexed::files`] and a 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub file: usize,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A word, quotes removed.
    Word(String),
    Open,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub loc: Loc,
}

/// Every token of a configuration and the files they came from.
#[derive(Debug, Default)]
pub struct Lexed {
    pub files: Vec<String>,
    pub tokens: Vec<Token>,
    /// Things keepalived would have warned about (an `include` matching
    /// nothing), with their place.
    pub warnings: Vec<String>,
}

impl Lexed {
    pub fn error(&self, loc: Loc, message: impl Into<String>) -> KaError {
        KaError {
            file: self.files.get(loc.file).cloned().unwrap_or_default(),
            line: loc.line,
            message: message.into(),
        }
    }
}

/// Reads `path` and everything it includes.
pub fn lex_file(path: &Path, config_id: &str) -> Result<Lexed, KaError> {
    let mut lx = Lexer {
        out: Lexed::default(),
        params: HashMap::new(),
        config_id: config_id.to_string(),
        stack: Vec::new(),
    };
    lx.file(path, None)?;
    Ok(lx.out)
}

/// Lexes text that did not come from a file (tests); `include`s are
/// resolved relative to the current directory.
#[cfg(test)]
pub fn lex_str(text: &str, name: &str, config_id: &str) -> Result<Lexed, KaError> {
    let mut lx = Lexer {
        out: Lexed::default(),
        params: HashMap::new(),
        config_id: config_id.to_string(),
        stack: Vec::new(),
    };
    lx.out.files.push(name.to_string());
    lx.text(text, 0, Path::new("."))?;
    Ok(lx.out)
}

struct Lexer {
    out: Lexed,
    params: HashMap<String, String>,
    config_id: String,
    /// Canonical paths of the files being read (include cycle detection).
    stack: Vec<PathBuf>,
}

impl Lexer {
    fn file(&mut self, path: &Path, from: Option<Loc>) -> Result<(), KaError> {
        let name = path.display().to_string();
        let err_at = |out: &Lexed, message: String| match from {
            Some(loc) => out.error(loc, message),
            None => KaError {
                file: name.clone(),
                line: 0,
                message,
            },
        };
        if self.out.files.len() >= MAX_FILES {
            return Err(err_at(
                &self.out,
                format!("more than {MAX_FILES} files included"),
            ));
        }
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            return Err(err_at(
                &self.out,
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH}"),
            ));
        }
        // the main file's errors already carry its name
        let what = if from.is_some() {
            format!("{name}: ")
        } else {
            String::new()
        };
        let sep = if from.is_some() {
            format!(" {name}: ")
        } else {
            ": ".to_string()
        };
        let canon = std::fs::canonicalize(path)
            .map_err(|e| err_at(&self.out, format!("cannot open{sep}{e}")))?;
        if self.stack.contains(&canon) {
            let chain: Vec<String> = self
                .stack
                .iter()
                .chain(std::iter::once(&canon))
                .map(|p| p.display().to_string())
                .collect();
            return Err(err_at(
                &self.out,
                format!("include cycle: {}", chain.join(" -> ")),
            ));
        }
        let file = std::fs::File::open(path)
            .map_err(|e| err_at(&self.out, format!("cannot open{sep}{e}")))?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| err_at(&self.out, format!("cannot read{sep}{e}")))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(err_at(
                &self.out,
                format!("{what}file too large (more than {MAX_FILE_BYTES} bytes)"),
            ));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| err_at(&self.out, format!("{what}not UTF-8 text: {e}")))?;
        let index = self.out.files.len();
        self.out.files.push(name);
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        self.stack.push(canon);
        let r = self.text(&text, index, &dir);
        self.stack.pop();
        r
    }

    fn text(&mut self, text: &str, file: usize, dir: &Path) -> Result<(), KaError> {
        for (i, raw_line) in text.lines().enumerate() {
            let loc = Loc { file, line: i + 1 };
            let mut line = raw_line.trim_start();
            // `@id rest`: only when id is this host's config-id; `@^id`: unless
            if let Some(cond) = line.strip_prefix('@') {
                let (id, rest) = cond.split_once(char::is_whitespace).unwrap_or((cond, ""));
                let keep = match id.strip_prefix('^') {
                    Some(id) => id != self.config_id,
                    None => id == self.config_id,
                };
                if !keep {
                    continue;
                }
                line = rest.trim_start();
            }
            if let Some(def) = line.strip_prefix('$') {
                if let Some((name, value)) = def.split_once('=') {
                    if valid_param_name(name) {
                        let value = value.trim();
                        if value.starts_with('{') || value.ends_with('\\') {
                            return Err(self.out.error(
                                loc,
                                format!("multi-line parameter ${name} is not supported"),
                            ));
                        }
                        self.params.insert(name.to_string(), value.to_string());
                        continue;
                    }
                }
            }
            if line.starts_with("~SEQ") {
                return Err(self.out.error(loc, "~SEQ lines are not supported"));
            }
            let line = self.substitute(line, loc, 0)?;
            let words = split_words(&line).map_err(|m| self.out.error(loc, m))?;
            if let Some(Tok::Word(w)) = words.first() {
                if w == "include" {
                    let pattern = match words.get(1..) {
                        Some([Tok::Word(p)]) => p.clone(),
                        _ => {
                            return Err(self
                                .out
                                .error(loc, "include takes one file name or glob pattern"))
                        }
                    };
                    self.include(&pattern, dir, loc)?;
                    continue;
                }
            }
            self.out
                .tokens
                .extend(words.into_iter().map(|tok| Token { tok, loc }));
        }
        Ok(())
    }

    fn include(&mut self, pattern: &str, dir: &Path, loc: Loc) -> Result<(), KaError> {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            dir.join(pattern)
        };
        let has_wildcard = pattern.contains(['*', '?', '[']);
        let paths = if has_wildcard {
            glob(&full).map_err(|m| self.out.error(loc, m))?
        } else {
            vec![full]
        };
        if paths.is_empty() {
            let w = self
                .out
                .error(loc, format!("include {pattern:?} matches no file"))
                .to_string();
            self.out.warnings.push(w);
        }
        for p in paths {
            self.file(&p, Some(loc))?;
        }
        Ok(())
    }

    /// keepalived's substitution: `${NAME}` anywhere, `$NAME` before
    /// whitespace or the end; unknown names stay as they are.
    fn substitute(&self, line: &str, loc: Loc, depth: usize) -> Result<String, KaError> {
        if !line.contains('$') || self.params.is_empty() {
            return Ok(line.to_string());
        }
        if depth > MAX_SUBSTITUTION_DEPTH {
            return Err(self.out.error(
                loc,
                "parameter substitution nested too deep (a parameter naming itself?)",
            ));
        }
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        let mut changed = false;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| c.is_whitespace())
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match self.params.get(name).filter(|_| consumed > 0) {
                Some(value) => {
                    out.push_str(value);
                    rest = &after[consumed..];
                    changed = true;
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        if out.len() > MAX_LINE_BYTES {
            return Err(self.out.error(
                loc,
                format!("line longer than {MAX_LINE_BYTES} bytes after parameter substitution"),
            ));
        }
        if changed {
            self.substitute(&out, loc, depth + 1)
        } else {
            Ok(out)
        }
    }
}

fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits one line into words and braces. `#` and `!` outside quotes start
/// a comment; `"..."` groups words (`\"` and `\\` escape).
fn split_words(line: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' => break,
            '{' | '}' => {
                if in_word {
                    out.push(Tok::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
                out.push(if c == '{' { Tok::Open } else { Tok::Close });
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted string".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\')) => word.push(e),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err("unterminated quoted string".into()),
                        },
                        Some(other) => word.push(other),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(Tok::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(Tok::Word(word));
    }
    Ok(out)
}

/// Expands a glob pattern (`*`, `?`, `[...]` in any component) into the
/// matching existing paths, sorted; names starting with `.` match only a
/// pattern that starts with `.` (as glob(3)).
fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let mut current: Vec<PathBuf> = vec![PathBuf::new()];
    let components: Vec<_> = pattern.components().collect();
    for (i, comp) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let part = comp.as_os_str().to_string_lossy();
        let wild = part.contains(['*', '?', '[']);
        let mut next = Vec::new();
        for base in &current {
            if !wild {
                let p = base.join(comp.as_os_str());
                if (last && p.exists()) || (!last && p.is_dir()) {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') || part.starts_with('.'))
                .filter(|n| fnmatch(part.as_bytes(), n.as_bytes()))
                .collect();
            names.sort();
            for n in names {
                let p = base.join(&n);
                if last || p.is_dir() {
                    next.push(p);
                }
            }
        }
        current = next;
        if current.len() > MAX_FILES {
            return Err(format!(
                "include pattern matches more than {MAX_FILES} files"
            ));
        }
    }
    current.retain(|p| p.is_file());
    Ok(current)
}

/// Shell-style matching of one name: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
fn fnmatch(pat: &[u8], name: &[u8]) -> bool {
    // iterative with one backtrack point for `*` (linear in practice)
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, len)) = class(&pat[p..], name[n]) {
                        if matched {
                            p += len;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == b'[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `pat`: whether `c` matches and the
/// class's length; `None` when the bracket is not closed.
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pat.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pat[i + 2];
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line)
            .unwrap()
            .into_iter()
            .map(|t| match t {
                Tok::Word(w) => w,
                Tok::Open => "{".into(),
                Tok::Close => "}".into(),
            })
            .collect()
    }

    #[test]
    fn words_quotes_comments_and_braces() {
        assert_eq!(words("  weight 1 # comment"), ["weight", "1"]);
        assert_eq!(words("lb_kind DR !comment"), ["lb_kind", "DR"]);
        assert_eq!(
            words("misc_path \"/bin/check -x # not a comment\" nobody"),
            ["misc_path", "/bin/check -x # not a comment", "nobody"]
        );
        assert_eq!(words("url{ path / }"), ["url", "{", "path", "/", "}"]);
        assert_eq!(words(r#"a "q\"x" """#), ["a", "q\"x", ""]);
        assert!(split_words("a \"open").is_err());
    }

    #[test]
    fn fnmatch_classes() {
        assert!(fnmatch(b"*.conf", b"a.conf"));
        assert!(!fnmatch(b"*.conf", b"a.conf.bak"));
        assert!(fnmatch(b"vs?[0-9].c*", b"vsa7.conf"));
        assert!(!fnmatch(b"[!a]*", b"abc"));
        assert!(fnmatch(b"*a*b*c", b"xxaxxbxxc"));
    }

    #[test]
    fn parameters_and_conditionals() {
        let lx = lex_str(
            "$VIP=198.18.0.100\n$PORT=80\n$BOTH=${VIP} $PORT\n@main weight 3\n@other weight 4\n\
             @^other x\nvirtual_server $BOTH\nvirtual_server ${VIP}x $UNKNOWN\n",
            "k.conf",
            "main",
        )
        .unwrap();
        let got: Vec<(String, usize)> = lx
            .tokens
            .iter()
            .map(|t| match &t.tok {
                Tok::Word(w) => (w.clone(), t.loc.line),
                t => (format!("{t:?}"), 0),
            })
            .collect();
        let want: Vec<(String, usize)> = [
            ("weight", 4),
            ("3", 4),
            ("x", 6),
            ("virtual_server", 7),
            ("198.18.0.100", 7),
            ("80", 7),
            ("virtual_server", 8),
            ("198.18.0.100x", 8),
            ("$UNKNOWN", 8),
        ]
        .iter()
        .map(|(w, l)| (w.to_string(), *l))
        .collect();
        assert_eq!(got, want);
        let e = lex_str("$A=$A\nx $A\n", "k.conf", "").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("k.conf:2: parameter substitution"),
            "{e}"
        );
        let bomb: String = (0..15)
            .map(|i| format!("$P{i}=${{P{}}}${{P{}}}\n", i + 1, i + 1))
            .collect();
        let e = lex_str(
            &format!("{bomb}$P15=0123456789abcdef0123456789abcdef\nx $P0\n"),
            "k.conf",
            "",
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("k.conf:17: line longer than"),
            "{e}"
        );
    }
}
