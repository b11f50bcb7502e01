//! Keeps the benchmark working: runs `fsjail-bench --short` against this build of fsjail
//! (and virtiofsd when installed) and checks that it ran, printed its table and wrote valid
//! JSON. No figure is asserted: timings on a shared CI machine mean nothing.

use std::path::PathBuf;
use std::process::Command;

/// `fsjail-bench` from the same target directory as this test, (re)built first so a run of
/// this test alone never uses a stale binary (`cargo build` is a no-op when it is fresh; cargo
/// holds no lock while tests run).
fn bench_binary() -> PathBuf {
    let fsjail = PathBuf::from(env!("CARGO_BIN_EXE_fsjail"));
    let bin = fsjail.with_file_name("fsjail-bench");
    let release = fsjail
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|n| n == "release");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", "bench", "--bin", "fsjail-bench"]);
    if release {
        cmd.arg("--release");
    }
    let built = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .is_ok_and(|st| st.success());
    assert!(
        built || bin.is_file(),
        "cargo build -p bench failed and there is no fsjail-bench at {}",
        bin.display()
    );
    bin
}

#[test]
fn short_run_prints_the_table_and_writes_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("figures.json");
    let work = tmp.path().join("work");
    let started = std::time::Instant::now();
    let out = Command::new(bench_binary())
        .arg("--short")
        .arg("--no-progress")
        .arg("--fsjail")
        .arg(env!("CARGO_BIN_EXE_fsjail"))
        .arg("--json")
        .arg(&json)
        .arg("--work-dir")
        .arg(&work)
        .output()
        .expect("run fsjail-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0: everything ran; 1: some subject FAILED (shown in the table: another component's
    // bug, not the benchmark's); anything else is the benchmark itself failing.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "fsjail-bench --short failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!(
        "fsjail-bench --short took {:?}\n{stdout}",
        started.elapsed()
    );

    // The table: a header row naming the columns, and one row per figure.
    assert!(stdout.contains("fsjail/"), "no ratio column:\n{stdout}");
    for title in [
        "LOOKUP+GETATTR",
        "CREATE+4 KiB WRITE+RELEASE",
        "4 KiB random READ",
        "1 MiB sequential READ",
        "1 MiB sequential WRITE",
        "READDIRPLUS",
        "DAX",
        "worker start",
        "idle worker RSS",
    ] {
        assert!(stdout.contains(title), "no {title:?} row:\n{stdout}");
    }

    let text = std::fs::read_to_string(&json).expect("the JSON file was written");
    let value = json::parse(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"));
    let figures = value
        .get("figures")
        .and_then(json::Value::as_array)
        .expect("a figures array");
    assert!(figures.len() >= 10, "{} figures", figures.len());
    for f in figures {
        assert!(
            f.get("id").is_some() && f.get("subjects").is_some(),
            "figure without id/subjects"
        );
    }
    // The core paths produced a number for fsjail (which number is not checked).
    for id in [
        "metadata",
        "randread-1q",
        "seqread",
        "readdirplus",
        "mix-p99",
        "idle-cpu",
    ] {
        let fig = figures
            .iter()
            .find(|f| matches!(f.get("id"), Some(json::Value::Str(s)) if s == id))
            .unwrap_or_else(|| panic!("no figure {id}"));
        let fsjail = fig.get("subjects").and_then(|s| s.get("fsjail"));
        assert!(
            fsjail.and_then(|s| s.get("median")).is_some(),
            "{id}: fsjail was not measured:\n{stdout}"
        );
        if id != "idle-cpu" {
            assert!(
                fsjail
                    .and_then(|s| s.get("cpu_s_per_1k_requests"))
                    .is_some(),
                "{id}: no CPU cost for fsjail:\n{stdout}"
            );
        }
    }
}

/// A strict little JSON parser (RFC 8259 grammar), enough to prove the file is valid.
mod json {
    #[derive(Debug)]
    pub enum Value {
        Null,
        Bool,
        Num,
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Obj(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        pub fn as_array(&self) -> Option<&[Value]> {
            match self {
                Value::Arr(v) => Some(v),
                _ => None,
            }
        }
    }

    pub fn parse(s: &str) -> Result<Value, String> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.b.len() && b" \t\r\n".contains(&self.b[self.i]) {
                self.i += 1;
            }
        }

        fn err<T>(&self, what: &str) -> Result<T, String> {
            Err(format!("{what} at byte {}", self.i))
        }

        fn eat(&mut self, lit: &str) -> Result<(), String> {
            if self.b[self.i..].starts_with(lit.as_bytes()) {
                self.i += lit.len();
                Ok(())
            } else {
                self.err(&format!("expected {lit}"))
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.b.get(self.i) {
                Some(b'{') => self.object(),
                Some(b'[') => self.array(),
                Some(b'"') => self.string().map(Value::Str),
                Some(b't') => self.eat("true").map(|_| Value::Bool),
                Some(b'f') => self.eat("false").map(|_| Value::Bool),
                Some(b'n') => self.eat("null").map(|_| Value::Null),
                Some(c) if *c == b'-' || c.is_ascii_digit() => self.number(),
                _ => self.err("expected a value"),
            }
        }

        fn object(&mut self) -> Result<Value, String> {
            self.i += 1;
            let mut pairs = Vec::new();
            self.ws();
            if self.b.get(self.i) == Some(&b'}') {
                self.i += 1;
                return Ok(Value::Obj(pairs));
            }
            loop {
                self.ws();
                let k = self.string()?;
                self.ws();
                self.eat(":")?;
                pairs.push((k, self.value()?));
                self.ws();
                match self.b.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(Value::Obj(pairs));
                    }
                    _ => return self.err("expected , or }"),
                }
            }
        }

        fn array(&mut self) -> Result<Value, String> {
            self.i += 1;
            let mut items = Vec::new();
            self.ws();
            if self.b.get(self.i) == Some(&b']') {
                self.i += 1;
                return Ok(Value::Arr(items));
            }
            loop {
                items.push(self.value()?);
                self.ws();
                match self.b.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        return Ok(Value::Arr(items));
                    }
                    _ => return self.err("expected , or ]"),
                }
            }
        }

        fn string(&mut self) -> Result<String, String> {
            if self.b.get(self.i) != Some(&b'"') {
                return self.err("expected a string");
            }
            self.i += 1;
            let start = self.i;
            loop {
                match self.b.get(self.i) {
                    None => return self.err("unterminated string"),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        match self.b.get(self.i + 1) {
                            Some(b'u') => {
                                let hex = self.b.get(self.i + 2..self.i + 6).unwrap_or_default();
                                if hex.len() != 4 || !hex.iter().all(u8::is_ascii_hexdigit) {
                                    return self.err("bad \\u escape");
                                }
                                self.i += 6;
                            }
                            Some(c) if b"\"\\/bfnrt".contains(c) => self.i += 2,
                            _ => return self.err("bad escape"),
                        }
                        continue;
                    }
                    Some(c) if *c < 0x20 => return self.err("control character in string"),
                    Some(_) => self.i += 1,
                }
            }
            let s = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
            self.i += 1;
            Ok(s)
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.i;
            if self.b[self.i] == b'-' {
                self.i += 1;
            }
            let digits = |p: &mut Self| {
                let s = p.i;
                while p.b.get(p.i).is_some_and(u8::is_ascii_digit) {
                    p.i += 1;
                }
                p.i - s
            };
            match self.b.get(self.i) {
                Some(b'0') => self.i += 1,
                Some(c) if c.is_ascii_digit() => {
                    digits(self);
                }
                _ => return self.err("bad number"),
            }
            if self.b.get(self.i) == Some(&b'.') {
                self.i += 1;
                if digits(self) == 0 {
                    return self.err("bad fraction");
                }
            }
            if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                if digits(self) == 0 {
                    return self.err("bad exponent");
                }
            }
            debug_assert!(self.i > start);
            Ok(Value::Num)
        }
    }

    #[test]
    fn parser_accepts_and_rejects() {
        assert!(parse(r#"{"a": [1, -2.5e3, "x\n", true, null], "b": {}}"#).is_ok());
        for bad in [
            "{",
            "[1,]",
            "01",
            "\"\u{1}\"",
            "{\"a\" 1}",
            "1 2",
            "-",
            "1.",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
