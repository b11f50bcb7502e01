//! The filters as build.rs embedded them: data for `describe` and `fsjail seccomp list`, and
//! the compiled programs for this machine's arch.

use std::collections::BTreeSet;
use std::fmt;

use seccompiler::sock_filter;

/// What a filter returns, as written in the policy JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u32),
    KillProcess,
    KillThread,
    Trap,
    Log,
    Trace(u32),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Allow => f.write_str("allow"),
            Action::Errno(n) => write!(f, "errno {n}"),
            Action::KillProcess => f.write_str("kill_process"),
            Action::KillThread => f.write_str("kill_thread"),
            Action::Trap => f.write_str("trap"),
            Action::Log => f.write_str("log"),
            Action::Trace(n) => write!(f, "trace {n}"),
        }
    }
}

/// The allowlist (mismatch action chosen by the mode) or a filter stacked under it (fixed
/// actions, e.g. clone3 answered ENOSYS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    Allowlist,
    Stacked,
}

/// How much of a 64-bit argument a check compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// The low 32 bits (int, unsigned int and flag arguments).
    Dword,
    /// All 64 bits.
    Qword,
}

/// Comparison of `arg` against the check's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `arg & mask == value`.
    MaskedEq(u64),
}

/// One condition on one argument; all of a rule's checks must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgCheck {
    pub index: u8,
    pub width: Width,
    pub op: Op,
    pub value: u64,
    /// Why the check is there, from the JSON.
    pub comment: &'static str,
}

impl ArgCheck {
    /// Whether `arg` passes this check, as the compiled filter decides it.
    pub fn accepts(&self, arg: u64) -> bool {
        let (arg, value) = match self.width {
            Width::Dword => (arg & 0xffff_ffff, self.value & 0xffff_ffff),
            Width::Qword => (arg, self.value),
        };
        match self.op {
            Op::Eq => arg == value,
            Op::Ne => arg != value,
            Op::Lt => arg < value,
            Op::Le => arg <= value,
            Op::Gt => arg > value,
            Op::Ge => arg >= value,
            Op::MaskedEq(mask) => arg & mask == value,
        }
    }
}

impl fmt::Display for ArgCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.index;
        match self.op {
            Op::Eq => write!(f, "arg{a} == {:#x}", self.value),
            Op::Ne => write!(f, "arg{a} != {:#x}", self.value),
            Op::Lt => write!(f, "arg{a} < {:#x}", self.value),
            Op::Le => write!(f, "arg{a} <= {:#x}", self.value),
            Op::Gt => write!(f, "arg{a} > {:#x}", self.value),
            Op::Ge => write!(f, "arg{a} >= {:#x}", self.value),
            Op::MaskedEq(mask) => write!(f, "arg{a} & {mask:#x} == {:#x}", self.value),
        }?;
        write!(f, " ({})", self.comment)
    }
}

/// One JSON rule: the call matches when every argument check holds (always, if none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub syscall: &'static str,
    /// The call's number on the filter's arch.
    pub nr: u32,
    /// Which operation needs the call, from the JSON.
    pub comment: &'static str,
    pub args: &'static [ArgCheck],
}

impl Rule {
    /// Whether this rule matches a call with these arguments.
    pub fn accepts(&self, args: &[u64; 6]) -> bool {
        self.args.iter().all(|c| {
            args.get(usize::from(c.index))
                .is_some_and(|&v| c.accepts(v))
        })
    }
}

/// One filter of one arch's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub name: &'static str,
    /// The JSON file under `policies/seccomp/<arch>/` it came from.
    pub file: &'static str,
    pub kind: FilterKind,
    pub match_action: Action,
    /// As written in the JSON; for the allowlist the mode replaces it at install time.
    pub mismatch_action: Action,
    /// Length of the compiled program (the `kill` variant for the allowlist), in instructions.
    pub bpf_len: usize,
    pub rules: &'static [Rule],
}

impl Filter {
    /// The distinct system calls the filter names, in policy order.
    pub fn syscalls(&self) -> Vec<&'static str> {
        let mut seen = BTreeSet::new();
        self.rules
            .iter()
            .map(|r| r.syscall)
            .filter(|s| seen.insert(*s))
            .collect()
    }

    /// How many distinct system calls the filter names: for the allowlist, how many it allows.
    pub fn syscall_count(&self) -> usize {
        self.syscalls().len()
    }

    /// The filter's action for a call, as its compiled program decides it (mismatch action as
    /// written in the JSON).
    pub fn action_for(&self, syscall: &str, args: &[u64; 6]) -> Action {
        let mut rules = self
            .rules
            .iter()
            .filter(|r| r.syscall == syscall)
            .peekable();
        if rules.peek().is_none() {
            return self.mismatch_action;
        }
        if rules.any(|r| r.accepts(args)) {
            self.match_action
        } else {
            self.mismatch_action
        }
    }
}

/// `fsjail seccomp list`: the filter's header, then each call with its argument rules and why.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.syscall_count();
        match self.kind {
            FilterKind::Allowlist => writeln!(
                f,
                "filter {} ({}): {n} system calls allowed; any other call, or an argument off its rules: \
                 kill_process (--seccomp kill, the default), trap or log; {} BPF instructions",
                self.name, self.file, self.bpf_len
            )?,
            FilterKind::Stacked => writeln!(
                f,
                "filter {} ({}, stacked): {n} system call{} answered {}; everything else: {}; {} BPF instructions",
                self.name,
                self.file,
                if n == 1 { "" } else { "s" },
                self.match_action,
                self.mismatch_action,
                self.bpf_len
            )?,
        }
        for name in self.syscalls() {
            let rules: Vec<&Rule> = self.rules.iter().filter(|r| r.syscall == name).collect();
            let nr = rules.first().map_or(0, |r| r.nr);
            if rules.iter().all(|r| r.args.is_empty()) {
                writeln!(f, "  {name} ({nr}): any arguments")?;
                for r in &rules {
                    writeln!(f, "      # {}", r.comment)?;
                }
                continue;
            }
            writeln!(f, "  {name} ({nr}): only if")?;
            for (i, r) in rules.iter().enumerate() {
                let cond: Vec<String> = r.args.iter().map(ToString::to_string).collect();
                let or = if i == 0 { "   " } else { "or " };
                writeln!(f, "    {or}{}", cond.join(" && "))?;
                writeln!(f, "      # {}", r.comment)?;
            }
        }
        Ok(())
    }
}

/// The compiled programs for the arch fsjail was built for.
pub(crate) struct Programs {
    /// Fixed filters, installed first, in policy order: (name, program).
    pub stacked: &'static [(&'static str, &'static [sock_filter])],
    pub allowlist_name: &'static str,
    /// The allowlist with each mismatch action.
    pub kill: &'static [sock_filter],
    pub trap: &'static [sock_filter],
    pub log: &'static [sock_filter],
}

include!(concat!(env!("OUT_DIR"), "/policy.rs"));
