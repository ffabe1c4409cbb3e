//! Each feature of the text/template language, executed and compared with what Go prints.

use std::collections::BTreeMap;
use std::sync::Arc;

use tocsin_template::{Options, Template, Value};

fn opts() -> Options {
    Options {
        html: false,
        now: "2026-03-05T14:00:00Z".parse().unwrap(),
    }
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(Arc::new(
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    ))
}

fn kv(pairs: &[(&str, &str)]) -> Value {
    Value::Kv(Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    ))
}

fn list(items: &[Value]) -> Value {
    Value::List(Arc::new(items.to_vec()))
}

fn data() -> Value {
    map(&[
        ("Name", "web".into()),
        ("Count", Value::Int(3)),
        ("Ratio", Value::Float(0.25)),
        ("Empty", "".into()),
        ("Items", list(&["a".into(), "b".into(), "c".into()])),
        (
            "Labels",
            kv(&[("severity", "page"), ("alertname", "Down"), ("job", "api")]),
        ),
        ("Nested", map(&[("Inner", map(&[("Leaf", "deep".into())]))])),
    ])
}

fn run(src: &str) -> String {
    let mut t = Template::new();
    t.parse("t", src).unwrap();
    t.execute("t", &data(), &opts()).unwrap()
}

fn fails(src: &str) -> String {
    let mut t = Template::new();
    match t.parse("t", src) {
        Err(e) => e.to_string(),
        Ok(()) => t.execute("t", &data(), &opts()).unwrap_err().to_string(),
    }
}

#[test]
fn fields_variables_and_pipelines() {
    assert_eq!(run("{{ .Name }}/{{ .Nested.Inner.Leaf }}"), "web/deep");
    assert_eq!(run("{{ $n := .Name }}{{ $n }}{{ $n = \"x\" }}{{ $n }}"), "webx");
    assert_eq!(
        run("{{ .Name | printf \"%s-%d\" | printf \"<%s>\" }}"),
        "<web-%!d(MISSING)>"
    );
    assert_eq!(
        run("{{ .Count | printf \"%d-%s\" .Name }}"),
        "%!d(string=web)-%!s(int=3)"
    );
    assert_eq!(run("{{ printf \"%s=%d\" .Name .Count }}"), "web=3");
    assert_eq!(run("{{ (index .Items 1) }}{{ (.Nested).Inner.Leaf }}"), "bdeep");
    assert_eq!(run("{{ $.Name }}{{ with .Nested }}{{ $.Count }}{{ end }}"), "web3");
    // missingkey=zero: a missing map key prints <no value>, a missing label is empty.
    assert_eq!(run("[{{ .Missing }}][{{ .Labels.missing }}]"), "[<no value>][]");
}

#[test]
fn conditionals_and_with() {
    assert_eq!(run("{{ if .Empty }}a{{ else if .Count }}b{{ else }}c{{ end }}"), "b");
    assert_eq!(run("{{ if and .Name (gt .Count 2) }}yes{{ end }}"), "yes");
    assert_eq!(run("{{ or .Empty .Missing \"fallback\" }}"), "fallback");
    assert_eq!(run("{{ and .Name .Empty .Count }}|{{ not .Empty }}"), "|true");
    assert_eq!(run("{{ with .Empty }}x{{ else }}none{{ end }}"), "none");
    assert_eq!(run("{{ with $x := .Name }}{{ $x }}{{ . }}{{ end }}"), "webweb");
    assert_eq!(
        run("{{ if eq .Name \"db\" \"web\" }}in{{ end }}{{ if ne .Count 3 }}!{{ end }}"),
        "in"
    );
    assert_eq!(
        run("{{ if lt 1.5 .Count }}lt{{ end }}{{ if ge .Ratio 0.25 }}ge{{ end }}"),
        "ltge"
    );
    // `and` stops at the first false argument, so the failing call never runs.
    assert_eq!(run("{{ and .Empty (index .Items 9) }}"), "");
}

#[test]
fn range_with_else_variables_break_and_continue() {
    assert_eq!(run("{{ range .Items }}{{ . }}{{ end }}"), "abc");
    assert_eq!(
        run("{{ range $i, $e := .Items }}{{ $i }}={{ $e }} {{ end }}"),
        "0=a 1=b 2=c "
    );
    assert_eq!(run("{{ range .Labels }}{{ . }},{{ end }}"), "Down,api,page,");
    assert_eq!(
        run("{{ range $k, $v := .Labels }}{{ $k }} {{ end }}"),
        "alertname job severity "
    );
    assert_eq!(run("{{ range .Missing }}x{{ else }}empty{{ end }}"), "empty");
    assert_eq!(
        fails("{{ range .Name }}x{{ end }}"),
        "template: t:1: executing \"t\": range can't iterate over web"
    );
    assert_eq!(
        run(
            "{{ range .Items }}{{ if eq . \"b\" }}{{ continue }}{{ end }}{{ if eq . \"c\" }}{{ break }}{{ end }}{{ . }}{{ end }}"
        ),
        "a"
    );
    assert_eq!(run("{{ range 3 }}{{ . }}{{ end }}"), "012");
    // A variable declared in a range body does not outlive it.
    assert_eq!(
        fails("{{ range .Items }}{{ $x := . }}{{ end }}{{ $x }}"),
        "template: t:1: undefined variable \"$x\""
    );
}

#[test]
fn define_template_and_block() {
    let src = r#"{{ define "item" }}<{{ . }}>{{ end }}{{ range .Items }}{{ template "item" . }}{{ end }}{{ block "tail" .Name }}[{{ . }}]{{ end }}"#;
    assert_eq!(run(src), "<a><b><c>[web]");
    // A later file redefines a template (how `templates:` override the defaults).
    let mut t = Template::new();
    t.parse("base", src).unwrap();
    t.parse("override", r#"{{ define "item" }}({{ . }}){{ end }}"#).unwrap();
    assert_eq!(t.execute("base", &data(), &opts()).unwrap(), "(a)(b)(c)[web]");
    assert_eq!(
        fails(r#"{{ template "nope" }}"#),
        "template: t:0: executing \"t\": template: no such template \"nope\""
    );
    let recursive = r#"{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" }}"#;
    assert!(fails(recursive).contains("exceeded maximum template depth"));
}

#[test]
fn whitespace_trimming() {
    assert_eq!(run("a \n {{- .Name -}} \n b"), "awebb");
    assert_eq!(run("{{ range .Items -}}\n  {{ . }}\n{{- end }}"), "abc");
}

#[test]
fn builtin_functions() {
    assert_eq!(run("{{ len .Items }} {{ len .Name }} {{ len .Labels }}"), "3 3 3");
    assert_eq!(
        run("{{ index .Labels \"job\" }} {{ index .Nested \"Inner\" \"Leaf\" }}"),
        "api deep"
    );
    assert_eq!(run("{{ slice .Name 1 }} {{ slice .Items 1 2 }}"), "eb [b]");
    assert_eq!(run("{{ print 1 2 \"a\" \"b\" 3 }}"), "1 2ab3");
    assert_eq!(run("{{ println .Name .Count }}"), "web 3\n");
    assert_eq!(run("{{ html \"<a href='x'>\" }}"), "&lt;a href=&#39;x&#39;&gt;");
    assert_eq!(run("{{ js \"it's\" }} {{ urlquery \"a b&c\" }}"), "it\\'s a+b%26c");
    assert_eq!(
        run("{{ printf \"%.2f %v %5s|\" .Ratio .Items \"ab\" }}"),
        "0.25 [a b c]    ab|"
    );
    assert_eq!(run("{{ 'a' }} {{ 0x1F }} {{ 1e3 }} {{ -2 }}"), "97 31 1000 -2");
}

#[test]
fn alertmanager_functions() {
    assert_eq!(
        run("{{ toUpper .Name }} {{ toLower \"AB\" }} {{ title \"hello world\" }}"),
        "WEB ab Hello World"
    );
    assert_eq!(run("{{ trimSpace \"  x \" }}|{{ join \", \" .Items }}"), "x|a, b, c");
    assert_eq!(
        run("{{ match \"^w.b$\" .Name }} {{ reReplaceAll \"(w)(e)\" \"$2$1\" .Name }}"),
        "true ewb"
    );
    assert_eq!(run("{{ join \"+\" (stringSlice \"x\" \"y\") }}"), "x+y");
    assert_eq!(run("{{ humanizeDuration 3725 }}"), "1h 2m 5s");
    assert_eq!(
        run("{{ toJson .Labels }}"),
        r#"{"alertname":"Down","job":"api","severity":"page"}"#
    );
    assert_eq!(run("{{ base64encode \"hi\" }} {{ base64decode \"aGk=\" }}"), "aGk= hi");
    assert_eq!(
        run("{{ (dict \"a\" 1 \"b\" 2).b }} {{ len (append (list 1) 2 3) }}"),
        "2 3"
    );
    assert_eq!(run("{{ date \"2006-01-02 15:04\" now }}"), "2026-03-05 14:00");
    assert_eq!(run("{{ now | tz \"Europe/Paris\" | date \"15:04 MST\" }}"), "15:00 CET");
    let t = r#"{{ (toDate "2006-01-02T15:04:05Z07:00" "2026-03-05T13:58:30Z") | since }}"#;
    assert_eq!(run(t), "1m30s");
}

#[test]
fn kv_methods() {
    assert_eq!(
        run("{{ range .Labels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}"),
        "alertname=Down;job=api;severity=page;"
    );
    assert_eq!(
        run("{{ .Labels.Names }} {{ .Labels.Values }}"),
        "[alertname job severity] [Down api page]"
    );
    assert_eq!(run("{{ .Labels.SortedPairs.Values }}"), "[Down api page]");
    assert_eq!(
        run("{{ (.Labels.Remove (stringSlice \"job\")).String }}"),
        "alertname=Down, severity=page"
    );
    assert_eq!(run("{{ .Labels.Remove .Labels.Names }}"), "map[]");
}

#[test]
fn errors_are_clear() {
    assert_eq!(
        fails("{{ nosuch .Name }}"),
        "template: t:1: function \"nosuch\" not defined"
    );
    assert_eq!(
        fails("{{ .Name.Foo }}"),
        "template: t:1: executing \"t\": can't evaluate field Foo in type string"
    );
    assert_eq!(
        fails("{{ index .Items 5 }}"),
        "template: t:1: executing \"t\": error calling index: index out of range: 5"
    );
    assert_eq!(fails("{{ $nope }}"), "template: t:1: undefined variable \"$nope\"");
    assert_eq!(
        fails("{{ len 3 }}"),
        "template: t:1: executing \"t\": error calling len: len of type int"
    );
    assert_eq!(fails("{{ if }}x{{ end }}"), "template: t:1: missing value for command");
    assert_eq!(
        fails("{{ eq .Items 1 }}"),
        "template: t:1: executing \"t\": error calling eq: incompatible types for comparison: []interface {} and int"
    );
}

#[test]
fn html_mode_escapes_values_but_not_markup_or_safe_html() {
    let mut t = Template::new();
    t.parse("t", r#"<b>{{ .Name }}</b>{{ safeHtml "<i>ok</i>" }}"#).unwrap();
    let d = map(&[("Name", "<script>&".into())]);
    let o = Options { html: true, ..opts() };
    assert_eq!(t.execute("t", &d, &o).unwrap(), "<b>&lt;script&gt;&amp;</b><i>ok</i>");
}
