//! Any text, and any sequence of template fragments, parses or fails with an error and, when it
//! parses, executes or fails with an error: never a panic or a hang. (fuzz/ runs the same check
//! under libFuzzer; this runs in CI.)

use proptest::prelude::*;
use tocsin_template::data::{Alert, Data};
use tocsin_template::{Options, Template};

const FRAGMENTS: &[&str] = &[
    "{{",
    "}}",
    "{{-",
    "-}}",
    " ",
    "\n",
    ".",
    ".Alerts",
    ".Status",
    ".Labels",
    ".SortedPairs",
    ".Firing",
    "$",
    "$x",
    ":=",
    "=",
    "|",
    "(",
    ")",
    ",",
    "\"",
    "`",
    "'",
    "if",
    "else",
    "end",
    "range",
    "with",
    "define",
    "template",
    "block",
    "break",
    "continue",
    "printf",
    "\"%d %s %v %q %5.2f\"",
    "index",
    "slice",
    "len",
    "eq",
    "lt",
    "and",
    "or",
    "not",
    "1",
    "-2",
    "0x1f",
    "1e3",
    "nil",
    "true",
    "/*",
    "*/",
    "\"t\"",
    "toUpper",
    "join",
    "reReplaceAll",
    "\"(\"",
    "match",
    "safeHtml",
    "date",
    "\"2006\"",
    "now",
    "tz",
    "\"Nowhere/Zone\"",
    "humanizeDuration",
    "dict",
    "list",
    "append",
    "toJson",
    "urlquery",
    "html",
    "js",
    "print",
    "println",
    "x",
    "é",
    "\\",
];

fn data() -> tocsin_template::Value {
    Data {
        status: "firing".into(),
        alerts: vec![Alert {
            status: "firing".into(),
            labels: [("alertname".to_string(), "A".to_string())].into(),
            ..Alert::default()
        }],
        ..Data::default()
    }
    .to_value()
}

fn exercise(src: &str) {
    let mut t = Template::with_defaults();
    if t.parse("p", src).is_ok() {
        for html in [false, true] {
            let opts = Options {
                html,
                now: jiff::Timestamp::UNIX_EPOCH,
            };
            let _ = t.execute("p", &data(), &opts);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fragments_never_panic(parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24)) {
        exercise(&parts.concat());
    }

    #[test]
    fn arbitrary_text_never_panics(src in ".{0,64}") {
        exercise(&src);
        exercise(&format!("{{{{{src}}}}}"));
    }
}

#[test]
fn deep_recursion_and_huge_output_are_errors() {
    let mut t = Template::new();
    t.parse(
        "r",
        r#"{{ define "x" }}{{ template "x" . }}{{ end }}{{ template "x" . }}"#,
    )
    .unwrap();
    let opts = Options {
        html: false,
        now: jiff::Timestamp::UNIX_EPOCH,
    };
    assert!(t.execute("r", &data(), &opts).is_err());
    // 8^8 = 16.7M iterations of 1 KiB would be 16 GiB: stops at the output limit.
    let nested = "{{ range 8 }}".repeat(8) + &"ab".repeat(512) + &"{{ end }}".repeat(8);
    t.parse("big", &nested).unwrap();
    let err = t.execute("big", &data(), &opts).unwrap_err().to_string();
    assert!(err.contains("output exceeds"), "{err}");
}
