//! Keeps `infra/` true to the code: every metric the Grafana dashboard and the alert rules query exists in the real
//! metric registries (sequencer and executor, rendered as `/metrics` renders them) with the labels the queries use;
//! the Helm chart ships the same alert rules; compose and Helm pass only flags that `verinfer <role> --help` lists;
//! every `.Values` path the chart's templates read is in `values.yaml`; files the compose stack mounts exist.
//! `promtool check rules` / `promtool test rules` run where promtool is installed (`.ci/run` installs it).

use serde_norway::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use verinfer_sequencer::metrics::Metrics;
use verinfer_sequencer::worker::WorkerMetrics;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// Sample name → label names, from the Prometheus text of every registry, with each labelled family given a child
/// (a family without children renders nothing). A new labelled metric the dashboards use must be touched here.
fn exposed() -> BTreeMap<String, BTreeSet<String>> {
    let m = Metrics::new().expect("sequencer metrics register");
    m.http_requests
        .with_label_values(&["/v1/chat/completions", "200"]);
    m.http_latency.with_label_values(&["/v1/chat/completions"]);
    m.queue_depth.with_label_values(&["queued"]);
    m.admitted.with_label_values(&["chat"]);
    m.jobs_refused.with_label_values(&["signature"]);
    m.settlement.l1_gas_used.with_label_values(&["post"]);
    m.settlement.l1_errors.with_label_values(&["post"]);
    let w = WorkerMetrics::new().expect("executor metrics register");
    w.jobs.with_label_values(&["lost"]);
    w.http_errors.with_label_values(&["lease"]);

    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in [m.render(), w.render()].iter().flat_map(|t| t.lines()) {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        let labels = out.entry(name.to_string()).or_default();
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            for pair in inner.0.split(',').filter(|p| !p.is_empty()) {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.to_string());
                }
            }
        }
    }
    assert!(
        out.keys().any(|n| n.starts_with("verinfer_sequencer_"))
            && out.keys().any(|n| n.starts_with("verinfer_executor_")),
        "registries rendered nothing: {out:?}"
    );
    out
}

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `verinfer_*` names in a PromQL expression with the label names of their selectors, and every `by (…)` /
/// `without (…)` label list.
fn parse_promql(expr: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut metrics = Vec::new();
    let mut grouping = Vec::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let start_ok = i == 0 || !is_ident(bytes[i - 1]);
        if start_ok
            && bytes[i..]
                .iter()
                .collect::<String>()
                .starts_with("verinfer_")
        {
            let mut j = i;
            while j < bytes.len() && is_ident(bytes[j]) {
                j += 1;
            }
            let name: String = bytes[i..j].iter().collect();
            let mut labels = Vec::new();
            if j < bytes.len() && bytes[j] == '{' {
                let end = bytes[j..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|p| j + p)
                    .expect("closed selector");
                let inner: String = bytes[j + 1..end].iter().collect();
                for matcher in split_matchers(&inner) {
                    let label: String = matcher
                        .trim()
                        .chars()
                        .take_while(|&c| is_ident(c))
                        .collect();
                    if !label.is_empty() {
                        labels.push(label);
                    }
                }
                j = end + 1;
            }
            metrics.push((name, labels));
            i = j;
            continue;
        }
        for kw in ["by", "without"] {
            let word: String = bytes[i..].iter().take(kw.len()).collect();
            let after = bytes.get(i + kw.len()).copied();
            if start_ok && word == kw && after.is_some_and(|c| !is_ident(c)) {
                let rest: String = bytes[i + kw.len()..].iter().collect();
                let rest = rest.trim_start();
                if let Some(list) = rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
                    grouping.extend(
                        list.0
                            .split(',')
                            .map(|l| l.trim().to_string())
                            .filter(|l| !l.is_empty()),
                    );
                }
            }
        }
        i += 1;
    }
    (metrics, grouping)
}

/// Splits `a="x", b=~"y,z"` at the commas outside quotes.
fn split_matchers(inner: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in inner.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                out.last_mut().expect("non-empty").push(c);
            }
            ',' if !quoted => out.push(String::new()),
            _ => out.last_mut().expect("non-empty").push(c),
        }
    }
    out
}

/// Checks one expression against the registries; returns its problems.
fn check_expr(
    origin: &str,
    expr: &str,
    exposed: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let (metrics, grouping) = parse_promql(expr);
    let mut labels_in_scope: BTreeSet<String> =
        TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    for (name, labels) in &metrics {
        let Some(known) = exposed.get(name) else {
            problems.push(format!(
                "{origin}: `{name}` is not in the registries' output (in `{expr}`)"
            ));
            continue;
        };
        labels_in_scope.extend(known.iter().cloned());
        for label in labels {
            if !known.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!(
                    "{origin}: `{name}` has no label `{label}` (it has {known:?})"
                ));
            }
        }
    }
    for label in grouping {
        if !labels_in_scope.contains(&label) {
            problems.push(format!(
                "{origin}: grouping label `{label}` is on none of the metrics of `{expr}`"
            ));
        }
    }
    problems
}

fn collect_exprs(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => {
                        out.push((path.to_string(), e.clone()))
                    }
                    _ => collect_exprs(v, &format!("{path}.{k}"), out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let name = item
                    .get("title")
                    .and_then(|t| t.as_str())
                    .map(|t| format!("{path}[{t}]"))
                    .unwrap_or_else(|| format!("{path}[{i}]"));
                collect_exprs(item, &name, out);
            }
        }
        _ => {}
    }
}

#[test]
fn grafana_dashboard_queries_real_metrics() {
    let exposed = exposed();
    let text = read("infra/grafana/dashboards/verinfer.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert_eq!(dash["uid"], "verinfer");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id: {title}"
        );
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        if p["type"] == "row" {
            continue;
        }
        // The datasource uid the provisioning file creates.
        assert_eq!(p["datasource"]["uid"], "prometheus", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert!(t["refId"].is_string(), "{title}: refId");
        }
    }
    let mut exprs = Vec::new();
    collect_exprs(&dash, "dashboard", &mut exprs);
    assert!(exprs.len() >= 20, "only {} queries", exprs.len());
    let mut used = BTreeSet::new();
    for (origin, expr) in &exprs {
        problems.extend(check_expr(origin, expr, &exposed));
        used.extend(parse_promql(expr).0.into_iter().map(|(n, _)| n));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The dashboard covers what DESIGN §7 asks operators to see.
    for needed in [
        "verinfer_sequencer_http_requests_total",
        "verinfer_sequencer_http_request_duration_seconds_bucket",
        "verinfer_sequencer_time_to_first_token_seconds_bucket",
        "verinfer_sequencer_tokens_generated_total",
        "verinfer_sequencer_queue_depth",
        "verinfer_sequencer_jobs_leased_total",
        "verinfer_sequencer_batch_leaves_bucket",
        "verinfer_sequencer_l1_post_duration_seconds_bucket",
        "verinfer_sequencer_l1_post_gas_used_bucket",
        "verinfer_sequencer_l1_bond_wei",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    let provisioning = read("infra/grafana/provisioning/datasources/prometheus.yml");
    assert!(provisioning.contains("uid: prometheus"));
}

fn alert_rules(rel: &str) -> Vec<(String, String)> {
    let doc = yaml(rel);
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name").to_string();
            let expr = rule["expr"].as_str().expect("expr").to_string();
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{name}: severity"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            out.push((name, expr));
        }
    }
    out
}

#[test]
fn alert_rules_query_real_metrics() {
    let exposed = exposed();
    let rules = alert_rules("infra/prometheus/alerts.yml");
    let names: BTreeSet<_> = rules.iter().map(|(n, _)| n.as_str()).collect();
    for needed in [
        "VerinferSequencerDown",
        "VerinferQueueDepthHigh",
        "VerinferL1PostFailing",
        "VerinferSequencerBondLow",
        "VerinferLeaseExpiries",
    ] {
        assert!(names.contains(needed), "no alert {needed}");
    }
    let mut problems = Vec::new();
    for (name, expr) in &rules {
        problems.extend(check_expr(name, expr, &exposed));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // `up{job=…}` alerts name the scrape jobs prometheus.yml defines.
    let prom = yaml("infra/prometheus/prometheus.yml");
    let jobs: BTreeSet<&str> = prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .filter_map(|s| s["job_name"].as_str())
        .collect();
    for (name, expr) in &rules {
        if let Some(rest) = expr.split("job=\"").nth(1) {
            let job = rest.split('"').next().unwrap_or_default();
            assert!(
                jobs.contains(job),
                "{name}: job {job} is not scraped ({jobs:?})"
            );
        }
    }
    // The Helm chart ships the very same rules.
    assert_eq!(
        read("infra/helm/verinfer/files/alerts.yml"),
        read("infra/prometheus/alerts.yml"),
        "infra/helm/verinfer/files/alerts.yml must be a copy of infra/prometheus/alerts.yml"
    );
}

#[test]
fn promtool_accepts_the_rules() {
    let Ok(out) = Command::new("promtool").arg("--version").output() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing on CI (.ci/run installs Debian's `prometheus` package)"
        );
        eprintln!(
            "promtool not installed: skipping `promtool check/test rules` (apt-get install prometheus)"
        );
        return;
    };
    assert!(out.status.success());
    for args in [
        vec!["check", "rules", "infra/prometheus/alerts.yml"],
        vec!["test", "rules", "infra/prometheus/alerts_test.yml"],
        vec![
            "check",
            "config",
            "--syntax-only",
            "infra/prometheus/prometheus.yml",
        ],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(repo())
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The long flags `verinfer <args> --help` lists.
fn help_flags(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_verinfer"))
        .args(args)
        .arg("--help")
        .output()
        .expect("verinfer runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verinfer {args:?} --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .collect()
}

/// `--flag` words of a command line (`--flag=value` counts as `--flag`).
fn flags_in(words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split('=').next().unwrap_or_default().to_string())
        .collect()
}

/// Every `verinfer` role invocation (subcommand path and flags) in the compose file.
fn compose_invocations(compose: &Yaml) -> Vec<(String, Vec<String>, Vec<String>)> {
    let services = compose["services"].as_mapping().expect("services");
    let mut out = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().expect("service name").to_string();
        let uses_verinfer = svc["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("verinfer"))
            || svc.get("build").is_some();
        if !uses_verinfer {
            continue;
        }
        let words: Vec<String> = match &svc["command"] {
            Yaml::Sequence(s) => s
                .iter()
                .map(|w| match w {
                    Yaml::String(s) => s.clone(),
                    other => serde_norway::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                })
                .collect(),
            Yaml::String(s) => s.split_whitespace().map(str::to_string).collect(),
            _ => panic!("service {name}: command must be a list"),
        };
        let sub: Vec<String> = words
            .iter()
            .take_while(|w| !w.starts_with('-'))
            .cloned()
            .collect();
        out.push((name, sub, flags_in(&words)));
    }
    out
}

#[test]
fn compose_uses_real_cli_flags_and_files() {
    let mut compose = yaml("infra/compose/docker-compose.yml");
    compose
        .apply_merge()
        .expect("compose `<<` merge keys resolve");
    let services = compose["services"].as_mapping().expect("services");
    for needed in [
        "postgres",
        "anvil",
        "sequencer",
        "executor-1",
        "executor-2",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.contains_key(needed),
            "compose has no service {needed}"
        );
    }
    let invocations = compose_invocations(&compose);
    assert!(invocations.len() >= 3, "{invocations:?}");
    let mut problems = Vec::new();
    for (service, sub, flags) in &invocations {
        let subs: Vec<&str> = sub.iter().map(String::as_str).collect();
        let known = help_flags(&subs);
        for flag in flags {
            if !known.contains(flag) {
                problems.push(format!(
                    "compose service {service}: `verinfer {}` has no flag {flag} (it has {known:?})",
                    subs.join(" ")
                ));
            }
        }
    }
    // The one-shot deployment script's `verinfer devnet --l1-rpc …` invocation (up to its `&`).
    let script = read("infra/compose/deploy-rollup.sh");
    let call = script
        .split_once("\nverinfer devnet ")
        .and_then(|(_, rest)| rest.split_once('&'))
        .map(|(args, _)| args)
        .expect("deploy-rollup.sh runs verinfer devnet in the background");
    let words: Vec<String> = call.split_whitespace().map(str::to_string).collect();
    let known = help_flags(&["devnet"]);
    for flag in flags_in(&words) {
        if !known.contains(&flag) {
            problems.push(format!(
                "deploy-rollup.sh: `verinfer devnet` has no flag {flag}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Bind-mounted files exist (paths relative to infra/compose).
    let base = repo().join("infra/compose");
    for (name, svc) in services {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let Some(src) = v.as_str().and_then(|v| v.split(':').next()) else {
                continue;
            };
            if src.starts_with('.') {
                assert!(
                    base.join(src).exists(),
                    "service {name:?} mounts missing {src}"
                );
            }
        }
    }
    // The Prometheus targets are compose services on the ports they listen on.
    let prom = read("infra/prometheus/prometheus.yml");
    for (service, _, _) in &invocations {
        if service.starts_with("executor") || service == "sequencer" {
            assert!(
                prom.contains(&format!("\"{service}:")),
                "prometheus.yml does not scrape {service}"
            );
        }
    }
}

/// `.Values.a.b.c` paths read by the chart's templates.
fn values_paths(template: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in template.match_indices(".Values.") {
        let path: String = template[i + ".Values.".len()..]
            .chars()
            .take_while(|&c| is_ident(c) || c == '.')
            .collect();
        let parts: Vec<String> = path
            .trim_end_matches('.')
            .split('.')
            .map(str::to_string)
            .collect();
        out.push(parts);
    }
    out
}

fn lookup<'a>(v: &'a Yaml, path: &[String]) -> Option<&'a Yaml> {
    path.iter().try_fold(v, |v, k| v.get(k.as_str()))
}

#[test]
fn helm_chart_is_consistent() {
    let chart = yaml("infra/helm/verinfer/Chart.yaml");
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["name"].as_str(), Some("verinfer"));
    let values = yaml("infra/helm/verinfer/values.yaml");
    let dir = repo().join("infra/helm/verinfer/templates");
    let mut problems = Vec::new();
    let mut templates: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .expect("templates/")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let t = std::fs::read_to_string(&p).expect("template");
            (p, t)
        })
        .collect();
    templates.sort();
    let kinds: BTreeSet<String> = templates
        .iter()
        .flat_map(|(_, t)| t.lines())
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(|k| k.trim().to_string())
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "Secret",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(kind), "the chart has no {kind} ({kinds:?})");
    }
    for (path, text) in &templates {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        for p in values_paths(text) {
            if lookup(&values, &p).is_none() {
                problems.push(format!(
                    "{name}: .Values.{} is not in values.yaml",
                    p.join(".")
                ));
            }
        }
        // Flags given to a role: the template names the role in its `args` (first list item).
        for role in ["sequencer", "executor"] {
            if !text.contains(&format!("- {role}\n")) && !text.contains(&format!("- \"{role}\"")) {
                continue;
            }
            let known = help_flags(&[role]);
            let words: Vec<String> = text
                .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .map(str::to_string)
                .collect();
            for flag in flags_in(&words) {
                if !known.contains(&flag) {
                    problems.push(format!("{name}: `verinfer {role}` has no flag {flag}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        values["sequencer"]["replicas"].as_u64().is_some(),
        "values: sequencer.replicas"
    );
    assert!(
        values["executor"]["replicas"].as_u64().is_some(),
        "values: executor.replicas"
    );
}

#[test]
fn promql_parser_finds_names_labels_and_grouping() {
    let (m, g) = parse_promql(
        "histogram_quantile(0.5, sum by (le, route) (rate(verinfer_sequencer_x_bucket{route=~\"a,b\", status!=\"5\"}[5m]))) / verinfer_y",
    );
    assert_eq!(
        m,
        vec![
            (
                "verinfer_sequencer_x_bucket".to_string(),
                vec!["route".to_string(), "status".to_string()]
            ),
            ("verinfer_y".to_string(), vec![])
        ]
    );
    assert_eq!(g, vec!["le".to_string(), "route".to_string()]);
    assert!(Path::new(&repo().join("infra/README.md")).exists());
}
