//! Finding the default backends: fsjail next to this program, virtiofsd on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::backend::BackendSpec;
use crate::error::{BenchError, Result};

/// What the run compares.
pub struct Backends {
    pub run: Vec<BackendSpec>,
    pub missing: Vec<(String, String)>,
    pub subject: String,
    pub reference: String,
    pub fsjail: Option<PathBuf>,
}

/// The fsjail program: `--fsjail`, else `fsjail` in the directory of this executable.
fn fsjail_program(explicit: Option<&Path>) -> Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| BenchError::io("locate", "fsjail-bench", e))?
            .with_file_name("fsjail"),
    };
    if !path.is_file() {
        return Err(BenchError::Usage(format!(
            "fsjail not found at {}: build it in the same profile (cargo build --release \
             --workspace), or pass --fsjail PATH, or --backend fsjail='... {{socket}} ... {{shared_dir}}'",
            path.display()
        )));
    }
    Ok(path)
}

/// The default fsjail template, using the flags this fsjail has (`--num-request-queues`,
/// and `--dax-window` once DAX is built in).
fn fsjail_template(program: &Path) -> String {
    let help = Command::new(program)
        .args(["serve", "--help"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default();
    let mut t = format!(
        "{} serve --socket-path {{socket}} --shared-dir {{shared_dir}}",
        program.display()
    );
    if help.contains("--num-request-queues") {
        t.push_str(" --num-request-queues {queues}");
    }
    if help.contains("--dax-window") {
        t.push_str(" --dax-window {dax_window}");
    }
    t
}

/// virtiofsd: `$FSJAIL_PEER` (what CI sets), else PATH, else ~/.cargo/bin.
fn find_virtiofsd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FSJAIL_PEER").map(PathBuf::from) {
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("virtiofsd"))
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/virtiofsd")))
        .find(|p| p.is_file())
}

/// The backends to run: the `--backend` list, or the defaults.
pub fn backends(explicit: &[String], fsjail: Option<&Path>) -> Result<Backends> {
    if !explicit.is_empty() {
        let run = explicit
            .iter()
            .map(|a| BackendSpec::parse_assignment(a))
            .collect::<Result<Vec<_>>>()?;
        for (i, b) in run.iter().enumerate() {
            if run[..i].iter().any(|o| o.name == b.name) {
                return Err(BenchError::Usage(format!(
                    "two backends are named {}",
                    b.name
                )));
            }
        }
        let named = |n: &str| run.iter().any(|b| b.name == n);
        let subject = if named("fsjail") {
            "fsjail".to_string()
        } else {
            run[0].name.clone()
        };
        let reference = if named("virtiofsd") {
            "virtiofsd".to_string()
        } else {
            run.iter()
                .map(|b| b.name.clone())
                .find(|n| *n != subject)
                .unwrap_or_else(|| "virtiofsd".to_string())
        };
        // The broker figures need the fsjail program itself.
        let fsjail = match fsjail {
            Some(p) => Some(fsjail_program(Some(p))?),
            None => run
                .iter()
                .find(|b| b.name == subject)
                .map(|b| PathBuf::from(b.program()))
                .filter(|p| p.file_name().is_some_and(|n| n == "fsjail") && p.is_file()),
        };
        let missing = if named(&reference) {
            vec![]
        } else {
            vec![(
                reference.clone(),
                "not among the --backend list".to_string(),
            )]
        };
        return Ok(Backends {
            run,
            missing,
            subject,
            reference,
            fsjail,
        });
    }

    let program = fsjail_program(fsjail)?;
    let mut run = vec![BackendSpec::new("fsjail", &fsjail_template(&program))?];
    let mut missing = Vec::new();
    match find_virtiofsd() {
        Some(v) => run.push(BackendSpec::new(
            "virtiofsd",
            &format!(
                "{} --socket-path={{socket}} --shared-dir={{shared_dir}} --sandbox=none --cache=auto",
                v.display()
            ),
        )?),
        None => missing.push((
            "virtiofsd".to_string(),
            "not found on PATH or in ~/.cargo/bin (cargo install virtiofsd; needs libseccomp-dev and libcap-ng-dev)"
                .to_string(),
        )),
    }
    Ok(Backends {
        run,
        missing,
        subject: "fsjail".into(),
        reference: "virtiofsd".into(),
        fsjail: Some(program),
    })
}
