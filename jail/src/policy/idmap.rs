//! uid_map / gid_map: each entry in range, no overlaps on either side, guest id 0 mapped, and
//! only what this broker may write (an unprivileged one: its own id, once). Also the maps a
//! share gets when the policy gives none.

use std::ops::Range;

use toml::Spanned;

use super::env::Env;
use super::error::Diags;
use super::schema::RawIdMap;
use super::{defaults, IdMap, SandboxMode};

/// Largest valid uid/gid: `(uid_t)-1` means "no id" to the kernel.
const ID_MAX: u64 = u32::MAX as u64 - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdKind {
    Uid,
    Gid,
}

impl IdKind {
    fn key(self) -> &'static str {
        match self {
            IdKind::Uid => "uid_map",
            IdKind::Gid => "gid_map",
        }
    }
}

/// The map a namespace-sandboxed share gets when the policy gives none (see
/// [`ShareConfig::uid_map`]).
pub(crate) fn default_id_map(kind: IdKind) -> Vec<IdMap> {
    let env = Env::current();
    default_map(&env, kind, SandboxMode::Namespace)
}

fn default_map(env: &Env, kind: IdKind, sandbox: SandboxMode) -> Vec<IdMap> {
    if env.root() || sandbox != SandboxMode::Namespace {
        return Vec::new();
    }
    let host = match kind {
        IdKind::Uid => env.euid,
        IdKind::Gid => env.egid,
    };
    vec![IdMap {
        guest: 0,
        host,
        count: 1,
    }]
}

pub(crate) fn check_map(
    env: &Env,
    d: &mut Diags<'_>,
    name: &str,
    kind: IdKind,
    raw: &Option<Spanned<Vec<Spanned<RawIdMap>>>>,
    sandbox: SandboxMode,
) -> Option<Vec<IdMap>> {
    let key = kind.key();
    let Some(raw) = raw else {
        return Some(default_map(env, kind, sandbox));
    };
    let before = d.list.len();
    let entries = raw.get_ref();
    if entries.is_empty() {
        return Some(default_map(env, kind, sandbox));
    }
    if sandbox != SandboxMode::Namespace {
        d.at(
            raw.span(),
            name,
            format!("{key}: needs sandbox = \"namespace\" (a user namespace)"),
        );
        return None;
    }
    if entries.len() > defaults::ID_MAP_MAX_LINES {
        d.at(
            raw.span(),
            name,
            format!(
                "{key}: {} entries; the kernel takes at most {}",
                entries.len(),
                defaults::ID_MAP_MAX_LINES
            ),
        );
        return None;
    }
    let mut maps: Vec<(IdMap, Range<usize>)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let e = entry.get_ref();
        let mut ok = true;
        for (field, value) in [("guest", &e.guest), ("host", &e.host)] {
            if !(0..=ID_MAX as i64).contains(value.get_ref()) {
                d.at(
                    value.span(),
                    name,
                    format!(
                        "{key}[{i}]: {field} {} is not a valid id (0..={ID_MAX})",
                        value.get_ref()
                    ),
                );
                ok = false;
            }
        }
        let count = *e.count.get_ref();
        if count < 1 {
            d.at(
                e.count.span(),
                name,
                format!("{key}[{i}]: count {count}: must be at least 1"),
            );
            ok = false;
        } else if count > u32::MAX as i64 {
            d.at(
                e.count.span(),
                name,
                format!("{key}[{i}]: count {count}: at most {}", u32::MAX),
            );
            ok = false;
        }
        if !ok {
            continue;
        }
        for (field, start) in [("guest", *e.guest.get_ref()), ("host", *e.host.get_ref())] {
            if start + count - 1 > ID_MAX as i64 {
                d.at(
                    e.count.span(),
                    name,
                    format!(
                        "{key}[{i}]: {field} ids {start} + count {count} run past the largest id {ID_MAX}"
                    ),
                );
                ok = false;
            }
        }
        if ok {
            // The range checks above make these conversions exact.
            let map = IdMap {
                guest: *e.guest.get_ref() as u32,
                host: *e.host.get_ref() as u32,
                count: count as u32,
            };
            maps.push((map, entry.span()));
        }
    }
    if d.list.len() != before {
        return None;
    }
    for (j, (b, span)) in maps.iter().enumerate() {
        for (i, (a, _)) in maps.iter().enumerate().take(j) {
            for (side, sa, sb) in [("guest", a.guest, b.guest), ("host", a.host, b.host)] {
                if overlaps(sa, a.count, sb, b.count) {
                    d.at(
                        span.clone(),
                        name,
                        format!(
                            "{key}[{j}]: {side} ids {} overlap {key}[{i}] ({side} ids {})",
                            range(sb, b.count),
                            range(sa, a.count)
                        ),
                    );
                }
            }
        }
    }
    if d.list.len() != before {
        return None;
    }
    if !env.root() {
        let own = match kind {
            IdKind::Uid => env.euid,
            IdKind::Gid => env.egid,
        };
        let what = match kind {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
        };
        if maps.len() != 1 || maps[0].0.host != own || maps[0].0.count != 1 {
            d.at(
                raw.span(),
                name,
                format!(
                    "{key}: an unprivileged broker can only map its own {what} {own}: one entry with host = {own}, count = 1"
                ),
            );
            return None;
        }
    }
    if !maps.iter().any(|(m, _)| m.guest == 0) {
        d.at(
            raw.span(),
            name,
            format!(
                "{key}: no entry maps guest id 0; the worker runs as id 0 in its user namespace"
            ),
        );
        return None;
    }
    Some(maps.into_iter().map(|(m, _)| m).collect())
}

fn overlaps(a: u32, a_count: u32, b: u32, b_count: u32) -> bool {
    let (a, b) = (u64::from(a), u64::from(b));
    a < b + u64::from(b_count) && b < a + u64::from(a_count)
}

fn range(start: u32, count: u32) -> String {
    format!("{start}..={}", u64::from(start) + u64::from(count) - 1)
}
