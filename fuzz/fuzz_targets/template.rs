//! Parses arbitrary text as a template and, when it parses, executes it over notification data
//! in text and HTML mode: neither may panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin_template::data::{Alert, Data};
use tocsin_template::{Options, Template};

fuzz_target!(|src: &str| {
    let mut t = Template::with_defaults();
    if t.parse("fuzz", src).is_err() {
        return;
    }
    let alert = Alert {
        status: "firing".into(),
        labels: [("alertname".to_string(), "A".to_string())].into(),
        ..Alert::default()
    };
    let data = Data {
        status: "firing".into(),
        alerts: vec![alert],
        ..Data::default()
    }
    .to_value();
    for html in [false, true] {
        let opts = Options {
            html,
            now: jiff::Timestamp::UNIX_EPOCH,
        };
        let _ = t.execute("fuzz", &data, &opts);
    }
});
