//! keepalived.conf's block structure: a keyword, its values on the same
//! line, and optionally a `{ ... }` block (opened on the same line or at the
//! start of the next one).

use super::lexer::{Lexed, Loc, Tok};
use super::KaError;

/// Blocks nested deeper than this are refused (keepalived's deepest is 4).
pub const MAX_DEPTH: usize = 16;

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub keyword: String,
    pub args: Vec<String>,
    pub loc: Loc,
    /// The `{ }` block, if it has one.
    pub block: Option<Vec<Node>>,
}

/// The statements of a lexed configuration.
pub fn parse(lx: &Lexed) -> Result<Vec<Node>, KaError> {
    let mut p = Parser { lx, pos: 0 };
    let nodes = p.block(0, None)?;
    Ok(nodes)
}

struct Parser<'a> {
    lx: &'a Lexed,
    pos: usize,
}

impl Parser<'_> {
    /// Statements up to the `}` closing the block opened at `open` (or the
    /// end of input at the top).
    fn block(&mut self, depth: usize, open: Option<Loc>) -> Result<Vec<Node>, KaError> {
        let mut nodes = Vec::new();
        loop {
            let Some(t) = self.lx.tokens.get(self.pos) else {
                return match open {
                    None => Ok(nodes),
                    Some(loc) => Err(self.lx.error(loc, "block opened here is never closed")),
                };
            };
            let loc = t.loc;
            match &t.tok {
                Tok::Close => {
                    self.pos += 1;
                    return match open {
                        Some(_) => Ok(nodes),
                        None => Err(self.lx.error(loc, "unexpected '}'")),
                    };
                }
                Tok::Open => {
                    return Err(self.lx.error(loc, "'{' without a keyword"));
                }
                Tok::Word(w) => {
                    let keyword = w.clone();
                    self.pos += 1;
                    let mut args = Vec::new();
                    while let Some(t) = self.lx.tokens.get(self.pos) {
                        match &t.tok {
                            Tok::Word(a) if t.loc == loc => {
                                args.push(a.clone());
                                self.pos += 1;
                            }
                            _ => break,
                        }
                    }
                    let block = match self.lx.tokens.get(self.pos) {
                        Some(t) if t.tok == Tok::Open => {
                            if depth + 1 > MAX_DEPTH {
                                return Err(self.lx.error(
                                    t.loc,
                                    format!("blocks nested deeper than {MAX_DEPTH}"),
                                ));
                            }
                            let open_loc = t.loc;
                            self.pos += 1;
                            Some(self.block(depth + 1, Some(open_loc))?)
                        }
                        _ => None,
                    };
                    nodes.push(Node {
                        keyword,
                        args,
                        loc,
                        block,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::lex_str;
    use super::*;

    fn tree(text: &str) -> Result<Vec<Node>, String> {
        let lx = lex_str(text, "k.conf", "").map_err(|e| e.to_string())?;
        parse(&lx).map_err(|e| e.to_string())
    }

    #[test]
    fn blocks_values_and_braces_on_the_next_line() {
        let t = tree(
            "virtual_server 198.18.0.100 80\n{\n  lb_algo rr\n  real_server 198.18.1.1 80 {\n    weight 2 }\n}\nother\n",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].keyword, "virtual_server");
        assert_eq!(t[0].args, ["198.18.0.100", "80"]);
        let b = t[0].block.as_ref().unwrap();
        assert_eq!((b[0].keyword.as_str(), b[0].loc.line), ("lb_algo", 3));
        let rs = b[1].block.as_ref().unwrap();
        assert_eq!(
            (rs[0].keyword.as_str(), rs[0].args.as_slice()),
            ("weight", &["2".to_string()][..])
        );
        assert_eq!(
            (t[1].keyword.as_str(), t[1].block.is_none()),
            ("other", true)
        );
    }

    #[test]
    fn unbalanced_braces_name_the_line() {
        assert_eq!(
            tree("a {\n b\n").unwrap_err(),
            "k.conf:1: block opened here is never closed"
        );
        assert_eq!(tree("a\n}\n").unwrap_err(), "k.conf:2: unexpected '}'");
        assert_eq!(
            tree("\n{ b }\n").unwrap_err(),
            "k.conf:2: '{' without a keyword"
        );
    }
}
