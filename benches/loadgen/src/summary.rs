//! `loadgen summarize FILE.jsonl [--markdown]`: the table of `make bench`.
//! Groups the JSON lines by scenario (in order of first appearance) and shows
//! the median of the runs for each figure; for losses and errors it shows the
//! worst run, since one lost message is one too many. Checks the goals of
//! issue 5.

use serde_json::Value;

/// Median of the values (mean of the middle two for an even count).
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

struct Group {
    name: String,
    runs: Vec<Value>,
}

impl Group {
    fn nums(&self, key: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.get(key).and_then(|v| v.as_f64()))
            .collect()
    }
    fn med(&self, key: &str) -> Option<f64> {
        median(&mut self.nums(key))
    }
    fn worst(&self, key: &str) -> Option<f64> {
        self.nums(key).into_iter().reduce(f64::max)
    }
    fn any_true(&self, key: &str) -> bool {
        self.runs
            .iter()
            .any(|r| r.get(key).and_then(|v| v.as_bool()).unwrap_or(false))
    }
}

/// (scenario prefix, figure, key, comparison, bound)
const GOALS: &[(&str, &str, &str, &str, f64)] = &[
    (
        "S1",
        "memory per idle stream (bytes)",
        "bytes_per_stream",
        "<=",
        1024.0,
    ),
    (
        "S1",
        "connections/s while opening",
        "conn_per_s",
        ">=",
        30000.0,
    ),
    ("S2-100", "p99 latency (ms)", "p99_ms", "<=", 20.0),
    ("S2-100", "missing", "missing", "==", 0.0),
    ("S2-1000", "p99 latency (ms)", "p99_ms", "<=", 50.0),
    ("S2-1000", "missing", "missing", "==", 0.0),
    ("S3", "publish rate (msg/s)", "publish_rate", ">=", 99.0),
    ("S3", "p99 latency (ms)", "p99_ms", "<=", 250.0),
    (
        "S3",
        "server CPU per delivery (µs)",
        "cpu_us_per_delivery",
        "<=",
        0.5,
    ),
    ("S3", "missing", "missing", "==", 0.0),
    (
        "S4",
        "server CPU per delivery (µs)",
        "cpu_us_per_delivery",
        "<=",
        1.0,
    ),
    (
        "S5",
        "every stream whole after restart (ms)",
        "whole_all_ms",
        "<=",
        5000.0,
    ),
    ("S5", "lost (per stream, by id)", "missing", "==", 0.0),
    ("S5", "duplicated (per stream, by id)", "dup", "==", 0.0),
];

const WORST_KEYS: &[&str] = &[
    "listen_overflows",
    "syn_retrans",
    "window_listen_overflows",
    "window_syn_retrans",
    "missing",
    "dup",
    "connect_errors",
    "closed_after_open",
    "pub_errors",
    "pub_unanswered",
    "bad_markers",
    "protocol_errors",
    "not_back",
    "not_whole",
    "bad_ids",
];

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.fract() == 0.0 || x.abs() >= 1000.0 => format!("{:.0}", x),
        Some(x) if x.abs() >= 100.0 => format!("{:.1}", x),
        Some(x) => format!("{:.2}", x),
    }
}

pub fn run(args: &[String]) -> i32 {
    let Some(path) = args.first() else {
        eprintln!("usage: loadgen summarize RESULTS.jsonl [--markdown]");
        return 2;
    };
    let markdown = args.iter().any(|a| a == "--markdown");
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen summarize: {}: {}", path, e);
            return 1;
        }
    };
    let mut groups: Vec<Group> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let name = v
            .get("scenario")
            .and_then(|s| s.as_str())
            .unwrap_or("?")
            .to_string();
        match groups.iter_mut().find(|g| g.name == name) {
            Some(g) => g.runs.push(v),
            None => groups.push(Group {
                name,
                runs: vec![v],
            }),
        }
    }
    if groups.is_empty() {
        eprintln!("loadgen summarize: no results in {}", path);
        return 1;
    }
    print!("{}", table(&groups, markdown));
    0
}

fn get(g: &Group, key: &str) -> Option<f64> {
    if WORST_KEYS.contains(&key) || crate::cluster::WORST_KEYS.contains(&key) {
        g.worst(key)
    } else {
        g.med(key)
    }
}

fn table(groups: &[Group], markdown: bool) -> String {
    let cols: &[(&str, &str)] = &[
        ("streams", "streams_open"),
        ("conn/s", "conn_per_s"),
        ("acc.ovf", "listen_overflows"),
        ("µs/conn", "server_us_per_connection"),
        ("B/stream", "bytes_per_stream"),
        ("hb CPU %", "heartbeat_cpu_pct"),
        ("msgs", "messages_acked"),
        ("pub/s", "publish_rate"),
        ("p50 ms", "p50_ms"),
        ("p99 ms", "p99_ms"),
        ("max ms", "max_ms"),
        ("missing", "missing"),
        ("dup", "dup"),
        ("deliv/s", "deliveries_per_s"),
        ("µs/deliv", "cpu_us_per_delivery"),
        ("lg CPU %", "loadgen_cpu_pct"),
        ("irq CPU %", "irq_cpu_pct"),
        ("other CPU %", "other_cpu_pct"),
    ];
    // S6's columns, shown only when some run closed its streams (--close-all).
    let close_cols: &[(&str, &str)] = &[
        ("closed", "streams_closed"),
        ("close CPU ms", "close_server_cpu_ms"),
        ("user ms", "close_server_user_ms"),
        ("µs/close", "close_cpu_us_per_stream"),
        ("µs/close sched", "close_cpu_us_per_stream_sched"),
        ("close wall ms", "close_wall_ms"),
    ];
    let any_close = groups.iter().any(|g| g.med("streams_closed").is_some());
    // S5's columns, shown only when some run was a reconnect storm.
    let storm_cols: &[(&str, &str)] = &[
        ("stop ms", "stop_ms"),
        ("back ms", "back_all_ms"),
        ("whole ms", "whole_all_ms"),
        ("whole p50 ms", "whole_p50_ms"),
        ("late max ms", "late_max_ms"),
        ("not whole", "not_whole"),
        ("replayed", "replayed"),
        ("µs/reconn", "restart_us_per_reconnect"),
        ("syn resent", "window_syn_retrans"),
        ("peak RSS kB", "restart_peak_rss_kb"),
    ];
    let any_storm = groups.iter().any(|g| g.any_true("storm"));
    // C1's columns (loadgen cluster), shown only when some run has them.
    let any_cluster = groups.iter().any(|g| g.med("nodes").is_some());
    let cols: Vec<(&str, &str)> = cols
        .iter()
        .chain(close_cols.iter().filter(|_| any_close))
        .chain(storm_cols.iter().filter(|_| any_storm))
        .chain(crate::cluster::COLUMNS.iter().filter(|_| any_cluster))
        .copied()
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["scenario".to_string(), "runs".to_string()];
    header.extend(cols.iter().map(|(h, _)| h.to_string()));
    rows.push(header);
    for g in groups {
        let mut row = vec![g.name.clone(), g.runs.len().to_string()];
        for (_, k) in &cols {
            row.push(fmt(get(g, k)));
        }
        if g.any_true("incomplete") {
            row[0].push('!');
        }
        rows.push(row);
    }
    let mut out = String::new();
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        if markdown {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
            if i == 0 {
                out.push_str(&format!("|{}\n", " --- |".repeat(r.len())));
            }
        } else {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    let pad = widths[c] - s.chars().count();
                    if c == 0 {
                        format!("{}{}", s, " ".repeat(pad))
                    } else {
                        format!("{}{}", " ".repeat(pad), s)
                    }
                })
                .collect();
            out.push_str(&cells.join("  "));
            out.push('\n');
        }
    }
    out.push('\n');
    out.push_str(if markdown {
        "| goal | scenario | median | bound | met |\n| --- | --- | --- | --- | --- |\n"
    } else {
        "goals (median of runs; missing: worst run):\n"
    });
    let mut unmet = Vec::new();
    for (scen, what, key, cmp, bound) in GOALS {
        let Some(g) = groups.iter().find(|g| g.name == *scen) else {
            continue;
        };
        let v = get(g, key);
        let ok = v.map(|x| match *cmp {
            "<=" => x <= *bound,
            ">=" => x >= *bound,
            _ => x == *bound,
        });
        let verdict = match ok {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "n/a",
        };
        if ok == Some(false) {
            unmet.push(format!(
                "{scen}: {what} is {}, the goal {cmp} {}",
                fmt(v),
                fmt(Some(*bound))
            ));
        }
        if markdown {
            out.push_str(&format!(
                "| {} | {} | {} | {} {} | {} |\n",
                what,
                scen,
                fmt(v),
                cmp,
                fmt(Some(*bound)),
                verdict
            ));
        } else {
            out.push_str(&format!(
                "  {:<8} {:<32} {:>10}  {} {:<8} {}\n",
                scen,
                what,
                fmt(v),
                cmp,
                fmt(Some(*bound)),
                verdict
            ));
        }
    }
    if groups.iter().any(|g| g.any_true("incomplete")) {
        out.push_str("(!: a run hit its deadline; its figures are partial)\n");
    }
    // A goal missed is said again at the end, where a reader looks last.
    if !unmet.is_empty() {
        out.push_str(if markdown {
            "\nGoals not met:\n"
        } else {
            "\ngoals not met:\n"
        });
        for u in &unmet {
            out.push_str(&format!("{} {u}\n", if markdown { "-" } else { " -" }));
        }
    }
    let notes = notes(groups);
    if !notes.is_empty() {
        out.push_str(if markdown { "\nNotes:\n" } else { "\nnotes:\n" });
        for n in notes {
            out.push_str(&format!("{} {}\n", if markdown { "-" } else { " -" }, n));
        }
    }
    out
}

/// What a reader of the table should know about who limited what.
fn notes(groups: &[Group]) -> Vec<String> {
    let mut out = Vec::new();
    for g in groups {
        if let Some(ovf) = g.worst("listen_overflows").filter(|&v| v > 0.0) {
            let low = g
                .nums("conn_per_s")
                .into_iter()
                .reduce(f64::min)
                .unwrap_or(0.0);
            out.push(format!(
                "{}: the server's accept queue overflowed ({:.0} connects dropped in the worst run, resent by the kernel after 1 s; that run opened {:.0} conn/s): its listen backlog is shorter than a burst of connects",
                g.name, ovf, low
            ));
        }
        if let (Some(lg), Some(us)) = (
            g.med("connect_loadgen_cpu_pct"),
            g.med("server_us_per_connection"),
        ) {
            // Only over an opening long enough for 10 ms CPU ticks to tell.
            let long_enough = g.med("connect_secs").unwrap_or(0.0) >= 0.2;
            if lg >= 90.0 && us > 0.0 && long_enough {
                out.push(format!(
                    "{}: conn/s was limited by the load generator (its core at {:.0} % while opening; on loopback the connecting side runs most of the TCP handshake); the server spent {:.0} µs per connection, about {:.0} conn/s of one core",
                    g.name,
                    lg,
                    us,
                    1e6 / us
                ));
            }
        }
        if let Some(lg) = g.med("loadgen_cpu_pct").filter(|&v| v >= 90.0) {
            out.push(format!(
                "{}: the load generator was near its core's limit while publishing ({:.0} %): deliveries/s and latency include its own queueing",
                g.name, lg
            ));
        }
        if let Some(o) = g.worst("other_cpu_pct").filter(|&v| v >= 20.0) {
            out.push(format!(
                "{}: other processes used up to {:.0} % of a core during a run: its figures are noisy",
                g.name, o
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0]), Some(3.0));
        assert_eq!(median(&mut [4.0, 2.0]), Some(3.0));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn table_uses_median_and_worst() {
        let runs = [
            r#"{"scenario":"S4","cpu_us_per_delivery":0.8,"missing":0,"streams_open":1000}"#,
            r#"{"scenario":"S4","cpu_us_per_delivery":1.4,"missing":3,"streams_open":1000}"#,
            r#"{"scenario":"S2-100","p99_ms":10.0,"missing":0}"#,
        ];
        let mut groups: Vec<Group> = Vec::new();
        for l in runs {
            let v: Value = serde_json::from_str(l).unwrap();
            let name = v["scenario"].as_str().unwrap().to_string();
            match groups.iter_mut().find(|g| g.name == name) {
                Some(g) => g.runs.push(v),
                None => groups.push(Group {
                    name,
                    runs: vec![v],
                }),
            }
        }
        assert_eq!(get(&groups[0], "cpu_us_per_delivery"), Some(1.1));
        assert_eq!(get(&groups[0], "missing"), Some(3.0));
        let t = table(&groups, false);
        assert!(
            t.lines()
                .any(|l| l.contains("S4") && l.contains("1.10") && l.ends_with("NO")),
            "{}",
            t
        );
        let missed = t
            .split("goals not met:")
            .nth(1)
            .expect("a closing list of missed goals");
        assert!(
            missed.contains("S4:") && missed.contains("1.10"),
            "{missed}"
        );
        assert!(
            t.lines()
                .any(|l| l.contains("S2-100") && l.contains("p99") && l.ends_with("yes")),
            "{}",
            t
        );
        let md = table(&groups, true);
        assert!(md.starts_with("| scenario | runs |"));
        assert!(!t.contains("µs/close"), "{}", t);
    }

    #[test]
    fn storm_columns_and_goal() {
        let runs = [
            r#"{"scenario":"S5","storm":true,"whole_all_ms":4991.6,"missing":0,"dup":0,"not_whole":0,"restart_us_per_reconnect":167.0}"#,
            r#"{"scenario":"S5","storm":true,"whole_all_ms":5100.0,"missing":0,"dup":0,"not_whole":0,"restart_us_per_reconnect":171.0}"#,
        ];
        let g = Group {
            name: "S5".into(),
            runs: runs
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        };
        let t = table(&[g], false);
        let head = t.lines().next().unwrap();
        assert!(
            head.contains("whole ms") && head.contains("µs/reconn"),
            "{}",
            t
        );
        assert!(!head.contains("µs/close"), "{}", t);
        assert!(
            t.lines().any(|l| l.contains("whole after restart")
                && l.contains("5046")
                && l.ends_with("NO")),
            "{}",
            t
        );
    }

    #[test]
    fn close_columns_when_a_run_closed() {
        let runs = [
            r#"{"scenario":"S6","streams_closed":10000,"close_server_cpu_ms":110.0,"close_cpu_us_per_stream":11.0,"close_wall_ms":206.3}"#,
            r#"{"scenario":"S6","streams_closed":10000,"close_server_cpu_ms":130.0,"close_cpu_us_per_stream":13.0,"close_wall_ms":250.0}"#,
            r#"{"scenario":"S6","streams_closed":10000,"close_server_cpu_ms":120.0,"close_cpu_us_per_stream":12.0,"close_wall_ms":240.0}"#,
        ];
        let g = Group {
            name: "S6".into(),
            runs: runs
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        };
        let t = table(&[g], false);
        let head = t.lines().next().unwrap();
        assert!(
            head.contains("µs/close") && head.contains("close wall ms"),
            "{}",
            t
        );
        let row = t.lines().nth(1).unwrap();
        assert!(
            row.contains("10000")
                && row.contains("120")
                && row.contains("12")
                && row.contains("240"),
            "{}",
            t
        );
    }
}
