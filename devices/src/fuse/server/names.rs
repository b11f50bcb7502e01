//! Checks on the strings a guest sends: entry names, symlink targets and xattr names.
//! Each check works on bytes already copied out of guest memory.

use std::ffi::CStr;

use crate::fuse::abi::{NAME_MAX, PATH_MAX};

/// Why a string from the guest was refused, mapped to the errno the guest gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// No NUL terminator where one must be.
    Unterminated,
    /// An empty string.
    Empty,
    /// Longer than the protocol allows.
    TooLong,
    /// A `/`, `.` or `..` where only a single path component may stand.
    NotAComponent,
}

impl NameError {
    pub fn errno(self) -> i32 {
        match self {
            NameError::TooLong => libc::ENAMETOOLONG,
            _ => libc::EINVAL,
        }
    }
}

/// Splits `bytes` at its first NUL: the string (with its NUL) and what follows.
pub fn split_cstr(bytes: &[u8]) -> Result<(&CStr, &[u8]), NameError> {
    let nul = bytes
        .iter()
        .position(|b| *b == 0)
        .ok_or(NameError::Unterminated)?;
    let (with_nul, rest) = bytes.split_at(nul + 1);
    let s = CStr::from_bytes_with_nul(with_nul).map_err(|_| NameError::Unterminated)?;
    Ok((s, rest))
}

/// An entry name: one path component, 1..=255 bytes, no `/`, not `.` or `..`.
///
/// `.` and `..` are refused because we never offer EXPORT_SUPPORT, so a Linux guest never sends
/// them, and `..` on the share root would otherwise walk out of an unjailed share.
pub fn check_entry_name(name: &CStr) -> Result<&CStr, NameError> {
    let bytes = name.to_bytes();
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes.len() > NAME_MAX {
        return Err(NameError::TooLong);
    }
    if bytes.contains(&b'/') || bytes == b"." || bytes == b".." {
        return Err(NameError::NotAComponent);
    }
    Ok(name)
}

/// A symlink target: any path, 1..=4095 bytes.
pub fn check_link_target(target: &CStr) -> Result<&CStr, NameError> {
    let len = target.to_bytes().len();
    if len == 0 {
        return Err(NameError::Empty);
    }
    if len > PATH_MAX {
        return Err(NameError::TooLong);
    }
    Ok(target)
}

/// An xattr name: 1..=255 bytes (Linux's XATTR_NAME_MAX).
pub fn check_xattr_name(name: &CStr) -> Result<&CStr, NameError> {
    let len = name.to_bytes().len();
    if len == 0 {
        return Err(NameError::Empty);
    }
    if len > NAME_MAX {
        return Err(NameError::TooLong);
    }
    Ok(name)
}

/// The one name that fills a request body: it must end exactly at the body's end.
pub fn single_entry_name(body: &[u8]) -> Result<&CStr, NameError> {
    let (name, rest) = split_cstr(body)?;
    if !rest.is_empty() {
        return Err(NameError::Unterminated);
    }
    check_entry_name(name)
}

/// Two entry names that fill a request body (RENAME, RENAME2).
pub fn two_entry_names(body: &[u8]) -> Result<(&CStr, &CStr), NameError> {
    let (first, rest) = split_cstr(body)?;
    let second = single_entry_name(rest)?;
    Ok((check_entry_name(first)?, second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_table() {
        let long = [b'a'; 256];
        let mut long_nul = long.to_vec();
        long_nul.push(0);
        let max = [b'a'; 255];
        let mut max_nul = max.to_vec();
        max_nul.push(0);
        let rows: &[(&[u8], Result<(), NameError>)] = &[
            (b"file\0", Ok(())),
            (b"\0", Err(NameError::Empty)),
            (b"file", Err(NameError::Unterminated)),
            (b"a/b\0", Err(NameError::NotAComponent)),
            (b".\0", Err(NameError::NotAComponent)),
            (b"..\0", Err(NameError::NotAComponent)),
            (b"...\0", Ok(())),
            (b"file\0junk", Err(NameError::Unterminated)),
            (&long_nul, Err(NameError::TooLong)),
            (&max_nul, Ok(())),
        ];
        for (input, want) in rows {
            let got = single_entry_name(input).map(|_| ());
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn two_names_need_two_terminators() {
        assert!(two_entry_names(b"old\0new\0").is_ok());
        assert_eq!(two_entry_names(b"old\0new"), Err(NameError::Unterminated));
        assert_eq!(
            two_entry_names(b"old\0a/b\0"),
            Err(NameError::NotAComponent)
        );
        assert_eq!(
            two_entry_names(b"o/d\0new\0"),
            Err(NameError::NotAComponent)
        );
    }

    #[test]
    fn link_targets_may_hold_slashes_but_not_be_empty() {
        let (t, _) = split_cstr(b"../../etc/passwd\0").unwrap();
        assert!(check_link_target(t).is_ok());
        let (e, _) = split_cstr(b"\0").unwrap();
        assert_eq!(check_link_target(e), Err(NameError::Empty));
    }
}
