//! Command lines and users for the programs health checking runs
//! (MISC_CHECK, notify and quorum scripts): one splitter and one user
//! lookup for both, as keepalived runs them — no shell, `user [group]`.

use std::ffi::CString;

/// Why a command line could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// A quote (`'` or `"`) is not closed.
    Unterminated(char),
    /// The line ends in a backslash.
    TrailingBackslash,
    /// No word at all.
    Empty,
}

/// Split a command line like a shell splits a simple command: words
/// separated by blanks, single quotes literal, double quotes with `\"`,
/// `\\`, `\$` and `` \` ``, backslash escapes outside quotes; no expansion.
pub fn split_command(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(SplitError::Unterminated('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(SplitError::Unterminated('"')),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(SplitError::Unterminated('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(SplitError::TrailingBackslash),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

/// A user's uid and primary gid by name (getpwnam_r: safe on any
/// thread), or a plain number as uid and gid; `None` when neither.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    if let Ok(cname) = CString::new(name) {
        let mut buf = vec![0 as libc::c_char; 16384];
        // SAFETY: passwd is plain data; getpwnam_r fills it and points its
        // strings into buf, which outlives the use below.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        // SAFETY: valid pointers and the buffer's real length.
        let r = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if r == 0 && !result.is_null() {
            return Some((pwd.pw_uid, pwd.pw_gid));
        }
    }
    name.parse::<u32>().ok().map(|uid| (uid, uid))
}

/// A group's gid by name (getgrnam_r), or a plain number; `None` when
/// neither.
pub fn lookup_group(name: &str) -> Option<u32> {
    if let Ok(cname) = CString::new(name) {
        let mut buf = vec![0 as libc::c_char; 16384];
        // SAFETY: group is plain data that getgrnam_r fills.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        // SAFETY: valid pointers and the buffer's real length.
        let r = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if r == 0 && !result.is_null() {
            return Some(grp.gr_gid);
        }
    }
    name.parse::<u32>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell_without_expansion_and_names_what_is_wrong() {
        assert_eq!(
            split_command(r#"/bin/x "a \"b\" \n" 'c\' d\ e"#).unwrap(),
            vec!["/bin/x", "a \"b\" \\n", "c\\", "d e"]
        );
        assert_eq!(split_command("x 'y"), Err(SplitError::Unterminated('\'')));
        assert_eq!(split_command("x \"y"), Err(SplitError::Unterminated('"')));
        assert_eq!(split_command("x\\"), Err(SplitError::TrailingBackslash));
        assert_eq!(split_command(" \t"), Err(SplitError::Empty));
    }

    #[test]
    fn users_and_groups_by_name_or_number() {
        assert_eq!(lookup_user("root"), Some((0, 0)));
        assert_eq!(lookup_user("4242"), Some((4242, 4242)));
        assert_eq!(lookup_user("no-such-user-vsd"), None);
        assert_eq!(lookup_group("root"), Some(0));
        assert_eq!(lookup_group("77"), Some(77));
        assert_eq!(lookup_group("no-such-group-vsd"), None);
    }
}
