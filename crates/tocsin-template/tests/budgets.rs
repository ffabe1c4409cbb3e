//! Templates come from the configuration and run at send time: whatever they say, rendering
//! ends soon, in bounded memory, with an error naming the limit (issue 18's examples).

use std::time::{Duration, Instant};

use tocsin_template::{Options, Template, Value};

fn opts() -> Options {
    Options {
        html: false,
        now: "2026-03-05T14:00:00Z".parse().unwrap(),
    }
}

fn error_of(src: &str) -> String {
    let mut t = Template::new();
    match t.parse("t", src) {
        Err(e) => e.to_string(),
        Ok(()) => t.execute("t", &Value::Nil, &opts()).unwrap_err().to_string(),
    }
}

#[test]
fn a_huge_range_ends_in_an_error_within_the_work_budget() {
    // Before: 5.9 GB of RSS before the first iteration, then minutes of CPU.
    for src in [
        "{{ range 10000000000 }}x{{ end }}",
        "{{ range 10000000000 }}{{ end }}",
        r#"{{ define "a" }}{{ range 100000000 }}x{{ end }}{{ end }}{{ define "b" }}{{ template "a" }}{{ template "a" }}{{ end }}{{ define "c" }}{{ template "b" }}{{ template "b" }}{{ end }}{{ template "c" }}{{ template "c" }}"#,
    ] {
        let started = Instant::now();
        let err = error_of(src);
        assert!(
            err.contains("work budget") || err.contains("output exceeds"),
            "{src}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{src}: took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn deep_nesting_is_a_parse_error_not_a_stack_overflow() {
    // Before: 100,000 nested parentheses aborted the process (SIGABRT) at --config.check.
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
    let err = error_of(&parens);
    assert!(err.contains("nested deeper than 100 levels"), "{err}");
    let ifs = format!("{}x{}", "{{ if 1 }}".repeat(100_000), "{{ end }}".repeat(100_000));
    let err = error_of(&ifs);
    assert!(err.contains("nested deeper than 100 levels"), "{err}");
    // Ordinary nesting is fine.
    let mut t = Template::new();
    t.parse("t", &format!("{}ok{}", "{{ if 1 }}".repeat(50), "{{ end }}".repeat(50)))
        .unwrap();
    assert_eq!(t.execute("t", &Value::Nil, &opts()).unwrap(), "ok");
}

#[test]
fn string_doubling_ends_at_the_value_budget() {
    // Found by tocsin-fuzz: thirty doublings of a string with printf asked for 2 GiB and took
    // 25 s before the work budget could stop it (it counts steps, not bytes).
    let started = Instant::now();
    let err = error_of(r#"{{ $s := "ab" }}{{ range 30 }}{{ $s = printf "%s%s" $s $s }}{{ end }}{{ len $s }}"#);
    assert!(err.contains("exceeds the budget of 16777216 bytes per value"), "{err}");
    let err = error_of(r#"{{ $s := "ab" }}{{ range 30 }}{{ $s = print $s $s }}{{ end }}"#);
    assert!(err.contains("bytes per value"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // Strings up to the budget are fine: 2^23 bytes made from "ab".
    let mut t = Template::new();
    t.parse(
        "t",
        r#"{{ $s := "ab" }}{{ range 22 }}{{ $s = printf "%s%s" $s $s }}{{ end }}{{ len $s }}"#,
    )
    .unwrap();
    assert_eq!(t.execute("t", &Value::Nil, &opts()).unwrap(), "8388608");
}
