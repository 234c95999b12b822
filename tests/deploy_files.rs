//! The deployment files under `deploy/` are well-formed and agree with the gateway: every YAML and JSON file
//! parses; every file the kustomization names exists and parses; the Kubernetes Deployment runs at least three
//! replicas with both probes on the admin port, and the `gateway.yaml` its generated ConfigMap holds loads as a
//! configuration whose secrets and writable paths the Deployment provides; the NetworkPolicy opens the admin
//! port to the monitoring namespace only; the Dockerfile builds without the mock platform, runs as a non-root
//! user, checks its health with the `health` subcommand (run here with the image's configuration), copies only
//! files the build context has, pins its base images by digest, passes `IBGW_GIT_SHA` to the build and ships
//! the stripped `dist` profile; the alerting rules (one of them on lost audit lines) and the Grafana dashboard
//! use only metrics the gateway exports; every alert links its
//! runbook section of docs/troubleshooting.md, has a unit test that fires it and, when it is a ratio or an
//! error rate, a minimum-traffic guard and a unit test in which the guard keeps it quiet; the systemd unit waits
//! out the drain; and, when `promtool` is installed (required with `IBGW_REQUIRE_PROMTOOL=1`), Prometheus
//! accepts the rules, their unit tests and the scrape configuration.

use serde::Deserialize;
use serde_norway::Value as Yaml;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every metric the gateway exports. The source of truth is `src/metrics.rs`: keep this list in step with it.
const METRICS: &[&str] = &[
    "ibgw_http_requests_total",
    "ibgw_http_request_duration_seconds",
    "ibgw_upstream_duration_seconds",
    "ibgw_upstream_errors_total",
    "ibgw_token_refreshes_total",
    "ibgw_session_timeouts_total",
    "ibgw_tokens_issued_total",
    "ibgw_logins_total",
    "ibgw_auth_failures_total",
    "ibgw_rate_limited_total",
    "ibgw_store_operation_duration_seconds",
    "ibgw_store_errors_total",
    "ibgw_store_up",
    "ibgw_active_sessions",
    "ibgw_build_info",
    "ibgw_requests_in_flight",
    "ibgw_log_lines_dropped_total",
    "ibgw_config_reloads_total",
    "ibgw_config_last_reload_success_timestamp_seconds",
    // The prometheus crate's process collector, under the registry's prefix.
    "ibgw_process_cpu_seconds_total",
    "ibgw_process_open_fds",
    "ibgw_process_max_fds",
    "ibgw_process_virtual_memory_bytes",
    "ibgw_process_resident_memory_bytes",
    "ibgw_process_start_time_seconds",
    "ibgw_process_threads",
];

/// The histograms among [`METRICS`]: their series are `<name>_bucket`, `<name>_sum` and `<name>_count`.
const HISTOGRAMS: &[&str] =
    &["ibgw_http_request_duration_seconds", "ibgw_upstream_duration_seconds", "ibgw_store_operation_duration_seconds"];

/// Series Prometheus itself writes for every scrape target; the only non-`ibgw_` names the files may use.
const PROMETHEUS_SERIES: &[&str] = &["up"];

const ALERTS: &str = "deploy/prometheus/alerts.yml";
const DASHBOARD: &str = "deploy/grafana/ib-oauth-gateway.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("readable directory entry").path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Files under `deploy/` whose extension is one of `extensions`, sorted.
fn deploy_files(extensions: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    collect_files(&root().join("deploy"), &mut files);
    files.retain(|path| path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e)));
    files.sort();
    files
}

/// Every document of a (possibly multi-document) YAML file.
fn yaml_documents(relative: &str) -> Vec<Yaml> {
    serde_norway::Deserializer::from_str(&read(relative))
        .map(|document| Yaml::deserialize(document).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).expect("under the repository").display().to_string()
}

/// The one document of `relative` whose `kind` is `kind`.
fn kubernetes_object(relative: &str, kind: &str) -> Yaml {
    let mut found: Vec<Yaml> =
        yaml_documents(relative).into_iter().filter(|doc| doc["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "{relative}: expected one {kind}");
    found.remove(0)
}

#[test]
fn every_yaml_and_json_file_under_deploy_parses() {
    let yaml = deploy_files(&["yaml", "yml"]);
    for expected in [
        "deploy/kubernetes/gateway.yaml",
        "deploy/kubernetes/kustomization.yaml",
        "deploy/kubernetes/networkpolicy.yaml",
        "deploy/kubernetes/ingress.example.yaml",
        "deploy/kubernetes/secret.example.yaml",
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/service.yaml",
        "deploy/kubernetes/pdb.yaml",
        "deploy/kubernetes/hpa.yaml",
        "deploy/kubernetes/servicemonitor.yaml",
        "deploy/prometheus/prometheus.yml",
        ALERTS,
    ] {
        assert!(yaml.iter().any(|path| relative(path) == expected), "{expected} is missing");
    }
    let generated = kustomization_generator_files();
    for path in &yaml {
        let name = relative(path);
        let documents = yaml_documents(&name);
        assert!(documents.iter().any(|doc| !doc.is_null()), "{name}: no YAML document");
        if name.starts_with("deploy/kubernetes/") && !generated.contains(&name) {
            for doc in documents.iter().filter(|doc| !doc.is_null()) {
                assert!(doc["apiVersion"].is_string() && doc["kind"].is_string(), "{name}: not a Kubernetes object");
            }
        }
    }
    let json = deploy_files(&["json"]);
    assert!(json.iter().any(|path| relative(path) == DASHBOARD), "{DASHBOARD} is missing");
    for path in &json {
        let name = relative(path);
        serde_json::from_str::<serde_json::Value>(&read(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A probe's port as a number, resolving a named port against the container's ports.
fn probe_port(container: &Yaml, probe: &str) -> Option<u64> {
    let port = &container[probe]["httpGet"]["port"];
    if let Some(number) = port.as_u64() {
        return Some(number);
    }
    let name = port.as_str()?;
    container["ports"].as_sequence()?.iter().find(|p| p["name"].as_str() == Some(name))?["containerPort"].as_u64()
}

#[test]
fn kubernetes_deployment_runs_three_replicas_with_both_probes_on_the_admin_port() {
    let deployment = kubernetes_object("deploy/kubernetes/deployment.yaml", "Deployment");
    let replicas = deployment["spec"]["replicas"].as_u64().expect("spec.replicas");
    assert!(replicas >= 3, "replicas: {replicas}");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(probe_port(container, "readinessProbe"), Some(9090));
    assert_eq!(probe_port(container, "livenessProbe"), Some(9090));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));

    let pdb = kubernetes_object("deploy/kubernetes/pdb.yaml", "PodDisruptionBudget");
    assert!(pdb["spec"]["minAvailable"].as_u64().is_some_and(|n| n >= 2 && n < replicas));
    let hpa = kubernetes_object("deploy/kubernetes/hpa.yaml", "HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["minReplicas"].as_u64(), Some(replicas));
}

/// Replaces every `{file: ...}` secret with a file written to `dir` (a real key pair for signing keys) and
/// gives every `{env: ...}` secret a value. Returns the files and variables the configuration referenced.
fn substitute_secrets(
    value: &mut Yaml,
    key: &str,
    algorithm: ib_oauth_gateway::config::SigningAlgorithm,
    dir: &Path,
    referenced: &mut (Vec<String>, Vec<String>),
) {
    if let Some(mapping) = value.as_mapping_mut() {
        if mapping.len() == 1 {
            if let Some(path) = mapping.get_mut("file") {
                referenced.0.push(path.as_str().expect("a file path").to_string());
                let (private_pem, public_pem) =
                    ib_oauth_gateway::keys::generate_pem(algorithm).expect("a key pair is generated");
                let contents = match key {
                    "private_key" => private_pem,
                    "public_key" => public_pem,
                    _ => "a-secret-of-at-least-sixteen-characters".to_string(),
                };
                let substitute = dir.join(format!("secret-{}", referenced.0.len()));
                std::fs::write(&substitute, contents).expect("temporary secret file is written");
                *path = Yaml::String(substitute.display().to_string());
                return;
            }
            if let Some(name) = mapping.get("env").and_then(Yaml::as_str) {
                referenced.1.push(name.to_string());
                if std::env::var_os(name).is_none() {
                    std::env::set_var(name, "a-secret-of-at-least-sixteen-characters");
                }
                return;
            }
        }
        for (child_key, child) in mapping.iter_mut() {
            let child_key = child_key.as_str().unwrap_or_default().to_string();
            substitute_secrets(child, &child_key, algorithm, dir, referenced);
        }
    } else if let Some(sequence) = value.as_sequence_mut() {
        for child in sequence {
            substitute_secrets(child, key, algorithm, dir, referenced);
        }
    }
}

fn signing_algorithm(config: &Yaml) -> ib_oauth_gateway::config::SigningAlgorithm {
    use ib_oauth_gateway::config::SigningAlgorithm;
    match config["signing"]["algorithm"].as_str() {
        None | Some("EdDSA") => SigningAlgorithm::EdDSA,
        Some("ES256") => SigningAlgorithm::ES256,
        Some("RS256") => SigningAlgorithm::RS256,
        Some(other) => panic!("unknown signing.algorithm {other}"),
    }
}

#[test]
fn kubernetes_configmap_gateway_yaml_loads_with_the_secrets_and_paths_the_deployment_provides() {
    use ib_oauth_gateway::config::{LogFormat, RateLimitBackend, StoreBackend};

    let text = read(&configmap_file("gateway.yaml"));
    let mut yaml: Yaml = serde_norway::from_str(&text).expect("gateway.yaml is YAML");
    let dir = tempfile::tempdir().unwrap();
    let mut referenced = (Vec::new(), Vec::new());
    let algorithm = signing_algorithm(&yaml);
    substitute_secrets(&mut yaml, "", algorithm, dir.path(), &mut referenced);
    let substituted = serde_norway::to_string(&yaml).unwrap();
    let config = ib_oauth_gateway::config::load_str(&substituted).unwrap_or_else(|e| panic!("gateway.yaml: {e}"));

    assert_eq!(config.store.backend, StoreBackend::Redis);
    assert_eq!(config.rate_limits.backend, RateLimitBackend::Redis);
    assert_eq!(config.logging.format, LogFormat::Json);
    assert_eq!(config.server.admin_listen.to_string(), "0.0.0.0:9090");
    assert!(config.signing.current.is_some(), "replicas must share a configured signing key");
    assert!(config.store.redis.password.is_some(), "the Redis password comes from the Secret");

    let deployment = kubernetes_object("deploy/kubernetes/deployment.yaml", "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let (files, variables) = referenced;
    let provided: Vec<&str> =
        container["env"].as_sequence().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
    for variable in &variables {
        assert!(
            provided.contains(&variable.as_str()),
            "gateway.yaml reads ${variable}, the Deployment does not set it"
        );
    }
    let mounts = container["volumeMounts"].as_sequence().expect("volumeMounts");
    let mount_of = |path: &str| {
        mounts
            .iter()
            .filter(|m| m["mountPath"].as_str().is_some_and(|dir| Path::new(path).starts_with(dir)))
            .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
            .cloned()
    };
    for file in &files {
        assert!(mount_of(file.as_str()).is_some(), "gateway.yaml reads {file}, which no volume provides");
    }
    // The root filesystem is read-only: the upgrade socket and pid file need a writable volume.
    for path in [config.server.upgrade_sock.as_str(), config.server.pid_file.as_str()] {
        let mount = mount_of(path).unwrap_or_else(|| panic!("{path} is on the read-only root filesystem"));
        assert_ne!(mount["readOnly"].as_bool(), Some(true), "{path} is on a read-only volume");
    }

    // Kubernetes kills the pod terminationGracePeriodSeconds after deletion starts: the preStop sleep and
    // the gateway's own drain must both fit.
    let sleep = pre_stop_sleep_seconds(container);
    let termination = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    let drain = config.server.grace_period_seconds + config.server.graceful_shutdown_timeout_seconds;
    assert!(termination > sleep + drain, "terminationGracePeriodSeconds {termination} <= {sleep} + {drain}");
}

const KUSTOMIZATION: &str = "deploy/kubernetes/kustomization.yaml";

fn kustomization() -> Yaml {
    serde_norway::from_str(&read(KUSTOMIZATION)).unwrap_or_else(|e| panic!("{KUSTOMIZATION}: {e}"))
}

fn strings(value: &Yaml) -> Vec<String> {
    value.as_sequence().into_iter().flatten().map(|v| v.as_str().expect("a string").to_string()).collect()
}

/// The files `configMapGenerator` turns into ConfigMaps, relative to the repository.
fn kustomization_generator_files() -> Vec<String> {
    let kustomization = kustomization();
    let generators = kustomization["configMapGenerator"].as_sequence().cloned().unwrap_or_default();
    generators
        .iter()
        .flat_map(|generator| strings(&generator["files"]))
        // `KEY=path` names the ConfigMap key explicitly; the file is the part after `=`.
        .map(|file| format!("deploy/kubernetes/{}", file.rsplit('=').next().unwrap()))
        .collect()
}

/// The file the generated ConfigMap takes `key` from.
fn configmap_file(key: &str) -> String {
    let files = kustomization_generator_files();
    files
        .iter()
        .find(|file| Path::new(file).file_name().and_then(|n| n.to_str()) == Some(key))
        .unwrap_or_else(|| panic!("{KUSTOMIZATION}: no configMapGenerator file for key {key} in {files:?}"))
        .clone()
}

fn pre_stop_sleep_seconds(container: &Yaml) -> u64 {
    let pre_stop = &container["lifecycle"]["preStop"];
    assert!(pre_stop["exec"].is_null(), "preStop runs a command: the image may have no shell or sleep binary");
    pre_stop["sleep"]["seconds"].as_u64().expect("preStop: {sleep: {seconds: N}}")
}

#[test]
fn kustomization_names_only_files_that_exist_and_parse_and_no_example() {
    let kustomization = kustomization();
    assert_eq!(kustomization["kind"].as_str(), Some("Kustomization"));
    let resources = strings(&kustomization["resources"]);
    assert!(resources.iter().any(|r| r == "deployment.yaml") && resources.iter().any(|r| r == "networkpolicy.yaml"));
    for resource in &resources {
        let name = format!("deploy/kubernetes/{resource}");
        assert!(root().join(&name).is_file(), "{KUSTOMIZATION}: resource {resource} does not exist");
        assert!(!resource.contains("example"), "{KUSTOMIZATION}: {resource} is an example with placeholders");
        for doc in yaml_documents(&name).iter().filter(|doc| !doc.is_null()) {
            assert!(doc["apiVersion"].is_string() && doc["kind"].is_string(), "{name}: not a Kubernetes object");
        }
    }
    let generators = kustomization["configMapGenerator"].as_sequence().expect("configMapGenerator");
    // The Deployment mounts the ConfigMap by the generator's name; kustomize rewrites it to the hashed name.
    let deployment = kubernetes_object("deploy/kubernetes/deployment.yaml", "Deployment");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_sequence().expect("volumes");
    let mounted: Vec<&str> = volumes.iter().filter_map(|v| v["configMap"]["name"].as_str()).collect();
    for generator in generators {
        let name = generator["name"].as_str().expect("generator name");
        assert!(mounted.contains(&name), "no volume mounts the generated ConfigMap {name}: {mounted:?}");
    }
    for file in kustomization_generator_files() {
        assert!(root().join(&file).is_file(), "{KUSTOMIZATION}: {file} does not exist");
        assert!(!yaml_documents(&file).is_empty(), "{file}: no YAML");
    }
    assert!(!root().join("deploy/kubernetes/configmap.yaml").exists(), "a static ConfigMap would not roll the pods");
}

/// With kubectl installed, kustomize itself renders the directory and points the Deployment at the generated,
/// hash-named ConfigMap.
#[test]
fn kubectl_kustomize_points_the_deployment_at_the_generated_configmap() {
    let Ok(output) = Command::new("kubectl").args(["kustomize", "deploy/kubernetes"]).current_dir(root()).output()
    else {
        eprintln!("kubectl is not on PATH: kustomize rendering not checked");
        return;
    };
    assert!(output.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&output.stderr));
    let rendered = String::from_utf8(output.stdout).unwrap();
    let documents: Vec<Yaml> =
        serde_norway::Deserializer::from_str(&rendered).map(|d| Yaml::deserialize(d).unwrap()).collect();
    let of_kind = |kind: &str| documents.iter().find(|d| d["kind"].as_str() == Some(kind)).cloned().unwrap();
    let configmap = of_kind("ConfigMap");
    let generated = configmap["metadata"]["name"].as_str().unwrap();
    assert!(generated.starts_with("ib-oauth-gateway-"), "{generated}");
    assert!(configmap["data"]["gateway.yaml"].is_string());
    let deployment = of_kind("Deployment");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_sequence().unwrap();
    assert!(volumes.iter().any(|v| v["configMap"]["name"].as_str() == Some(generated)), "{volumes:?}");
}

#[test]
fn network_policy_opens_the_public_port_and_the_admin_port_to_monitoring_only() {
    let policy = kubernetes_object("deploy/kubernetes/networkpolicy.yaml", "NetworkPolicy");
    let deployment = kubernetes_object("deploy/kubernetes/deployment.yaml", "Deployment");
    let pod_labels = deployment["spec"]["template"]["metadata"]["labels"].as_mapping().expect("pod labels");
    let selector = policy["spec"]["podSelector"]["matchLabels"].as_mapping().expect("podSelector.matchLabels");
    assert!(!selector.is_empty(), "an empty podSelector selects every pod of the namespace");
    for (key, value) in selector {
        assert_eq!(pod_labels.get(key), Some(value), "podSelector {key:?} does not select the gateway pods");
    }
    assert!(strings(&policy["spec"]["policyTypes"]).contains(&"Ingress".to_string()));
    let rules = policy["spec"]["ingress"].as_sequence().expect("ingress rules");
    // A port by number or by the container port's name.
    let number = |port: &Yaml| match port.as_str() {
        Some("http") => Some(8080),
        Some("admin") => Some(9090),
        _ => port.as_u64(),
    };
    // A rule without ports opens every port.
    let opens = |rule: &Yaml, port: u64| {
        rule["ports"].as_sequence().is_none_or(|ports| ports.iter().any(|p| number(&p["port"]) == Some(port)))
    };
    let public: Vec<&Yaml> = rules.iter().filter(|rule| opens(rule, 8080)).collect();
    assert!(!public.is_empty(), "nothing may reach the public port 8080");
    let admin: Vec<&Yaml> = rules.iter().filter(|rule| opens(rule, 9090)).collect();
    assert!(!admin.is_empty(), "Prometheus cannot reach the admin port 9090");
    for rule in admin {
        let from = rule["from"].as_sequence().expect("a rule opening 9090 says from whom");
        assert!(!from.is_empty(), "an empty `from` opens 9090 to everyone");
        for peer in from {
            let namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str();
            assert_eq!(namespace, Some("monitoring"), "9090 open to {peer:?}");
            assert!(peer["ipBlock"].is_null());
        }
    }
}

#[test]
fn systemd_unit_runs_in_the_foreground_and_waits_out_the_drain() {
    let unit = read("deploy/systemd/ib-oauth-gateway.service");
    let setting = |name: &str| {
        unit.lines().find_map(|line| line.trim().strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
    };
    assert_eq!(setting("Type"), Some("simple"));
    assert_eq!(setting("KillSignal"), Some("SIGTERM"));
    assert!(setting("ExecStart").is_some_and(|exec| exec.contains("--config")));
    assert_eq!(setting("ExecReload"), Some("/bin/kill -HUP $MAINPID"), "systemctl reload is the live reload");
    let defaults = ib_oauth_gateway::config::load_str("server:\n  public_url: https://gateway.example.com\n").unwrap();
    let drain = defaults.server.grace_period_seconds + defaults.server.graceful_shutdown_timeout_seconds;
    let timeout: u64 = setting("TimeoutStopSec").and_then(|t| t.parse().ok()).expect("TimeoutStopSec in seconds");
    assert!(timeout > drain, "TimeoutStopSec {timeout} does not cover the default drain of {drain} s");
}

/// Metric names a PromQL expression reads. A small lexer, enough for our files: strings, label matchers,
/// range selectors and grouping clauses are skipped; aggregations and identifiers followed by `(` are
/// functions; keywords and numbers are skipped; every other identifier names a metric.
fn promql_metrics(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    const CLAUSES: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let skip_string = |mut i: usize| {
        let quote = chars[i];
        i += 1;
        while i < chars.len() {
            if chars[i] == '\\' && quote != '`' {
                i += 2;
            } else if chars[i] == quote {
                return i + 1;
            } else {
                i += 1;
            }
        }
        i
    };
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => i = skip_string(i),
                c if c == open => {
                    depth += 1;
                    i += 1;
                }
                c if c == close => {
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => i += 1,
            }
        }
        i
    };
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(i);
        } else if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // Numbers and durations: 0.05, 1e-9, 1d.
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if CLAUSES.contains(&word.as_str()) && called {
                i = skip_group(next, '(', ')');
            } else if !(called || KEYWORDS.contains(&word.as_str()) || AGGREGATIONS.contains(&word.as_str())) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The exported metric a series name belongs to (`x_bucket` of histogram `x` is `x`), if any.
fn exported_metric(series: &str) -> Option<&'static str> {
    if let Some(metric) = METRICS.iter().copied().find(|m| *m == series) {
        return Some(metric);
    }
    HISTOGRAMS.iter().copied().find(|histogram| {
        series.strip_prefix(histogram).is_some_and(|suffix| matches!(suffix, "_bucket" | "_sum" | "_count"))
    })
}

/// Every `ibgw_...` word in a text, wherever it appears (expressions, descriptions, variable queries).
fn ibgw_words(text: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ibgw_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        if end > "ibgw_".len() {
            words.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    words
}

/// Checks the expressions and words of one file; returns the exported metrics it uses.
fn check_metric_names(file: &str, expressions: &[String]) -> BTreeSet<&'static str> {
    assert!(!expressions.is_empty(), "{file}: no expressions found");
    let mut used = BTreeSet::new();
    for expr in expressions {
        let names = promql_metrics(expr);
        assert!(!names.is_empty(), "{file}: `{expr}` reads no metric");
        for name in names {
            if PROMETHEUS_SERIES.contains(&name.as_str()) {
                continue;
            }
            assert!(name.starts_with("ibgw_"), "{file}: `{name}` in `{expr}` is not a gateway metric");
            let metric = exported_metric(&name)
                .unwrap_or_else(|| panic!("{file}: `{name}` in `{expr}` is not exported (src/metrics.rs)"));
            used.insert(metric);
        }
    }
    for word in ibgw_words(&read(file)) {
        assert!(exported_metric(&word).is_some(), "{file}: `{word}` is not an exported metric");
    }
    used
}

fn json_expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child.as_str()) {
                    ("expr", Some(expr)) => out.push(expr.to_string()),
                    _ => json_expressions(child, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| json_expressions(item, out)),
        _ => {}
    }
}

#[test]
fn promql_lexer_finds_metrics_and_nothing_else() {
    let expr = r#"histogram_quantile(0.99, sum by (le) (rate(ibgw_x_bucket{route="proxy", a=~"{b}"}[5m])))
        / (sum(rate(up[1d] offset 1d)) + (sum(rate(ibgw_y{kind!="5xx"}[$__rate_interval])) or vector(1e-9))) > 0.05
        and on (job) ibgw_z == bool 1"#;
    assert_eq!(promql_metrics(expr), ["ibgw_x_bucket", "up", "ibgw_y", "ibgw_z"]);
}

#[test]
fn alerting_rules_use_only_exported_metrics_and_say_what_is_wrong() {
    let documents = yaml_documents(ALERTS);
    let groups = documents[0]["groups"].as_sequence().expect("groups");
    let mut expressions = Vec::new();
    let mut alerts = BTreeSet::new();
    for rule in groups.iter().flat_map(|group| group["rules"].as_sequence().expect("rules")) {
        let alert = rule["alert"].as_str().expect("every rule is an alert");
        assert!(alerts.insert(alert.to_string()), "{alert} is defined twice");
        assert!(rule["for"].is_string(), "{alert}: no `for:`");
        let severity = rule["labels"]["severity"].as_str();
        assert!(matches!(severity, Some("critical" | "warning" | "info")), "{alert}: severity {severity:?}");
        for annotation in ["summary", "description"] {
            assert!(rule["annotations"][annotation].as_str().is_some_and(|s| !s.is_empty()), "{alert}: {annotation}");
        }
        expressions.push(rule["expr"].as_str().expect("expr").to_string());
    }
    let used = check_metric_names(ALERTS, &expressions);
    for required in [
        "ibgw_token_refreshes_total",
        "ibgw_session_timeouts_total",
        "ibgw_upstream_errors_total",
        "ibgw_http_request_duration_seconds",
        "ibgw_store_errors_total",
        "ibgw_store_up",
        "ibgw_process_resident_memory_bytes",
        "ibgw_process_open_fds",
        "ibgw_process_max_fds",
    ] {
        assert!(used.contains(required), "{ALERTS}: nothing alerts on {required}");
    }
    assert!(expressions.iter().any(|e| e.contains(r#"result="reuse_detected""#)), "reuse detection alert");
    assert!(expressions.iter().any(|e| e.contains(r#"result="refresh_limit_exceeded""#)), "refresh limit alert");
    let audit_dropped = r#"ibgw_log_lines_dropped_total{log="audit"}"#;
    assert!(expressions.iter().any(|e| e.contains(audit_dropped)), "no alert on lost audit lines ({audit_dropped})");
    assert!(expressions.iter().any(|e| promql_metrics(e).iter().any(|m| m == "up")), "instance down alert");
}

#[test]
fn grafana_dashboard_shows_every_exported_metric() {
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "panel ids are unique");
        if panel["type"] != "row" {
            assert!(panel["targets"].as_array().is_some_and(|t| !t.is_empty()), "{}: no query", panel["title"]);
        }
    }
    let mut expressions = Vec::new();
    json_expressions(&dashboard, &mut expressions);
    let used = check_metric_names(DASHBOARD, &expressions);
    let missing: Vec<_> = METRICS.iter().filter(|m| !used.contains(*m)).collect();
    assert!(missing.is_empty(), "{DASHBOARD} shows nothing of {missing:?}");
}

const ALERT_TESTS: &str = "deploy/prometheus/alerts.test.yml";
const TROUBLESHOOTING: &str = "docs/troubleshooting.md";

/// Every alerting rule of [`ALERTS`].
fn alert_rules() -> Vec<Yaml> {
    let documents = yaml_documents(ALERTS);
    let groups = documents[0]["groups"].as_sequence().expect("groups");
    groups.iter().flat_map(|group| group["rules"].as_sequence().expect("rules").clone()).collect()
}

/// The anchor GitHub gives a heading: lower case, punctuation other than `-` and `_` dropped, spaces as `-`.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading of a Markdown text (outside fenced code), with GitHub's `-1`, `-2`, ... for
/// repeated headings.
fn markdown_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#').map(|rest| rest.trim_start_matches('#')) else { continue };
        if fenced || !heading.starts_with(' ') {
            continue;
        }
        let anchor = github_anchor(heading);
        let unique = (0..).map(|n| if n == 0 { anchor.clone() } else { format!("{anchor}-{n}") });
        let free = unique.into_iter().find(|candidate| !anchors.contains(candidate)).unwrap();
        anchors.insert(free);
    }
    anchors
}

#[test]
fn github_anchors_follow_github() {
    assert_eq!(github_anchor("Limits and availability"), "limits-and-availability");
    assert_eq!(github_anchor("Upgrades, shutdown and reload"), "upgrades-shutdown-and-reload");
    assert_eq!(github_anchor("`ibgw_store_up` is 0"), "ibgw_store_up-is-0");
    let anchors = markdown_anchors("# A\n## B b\n```sh\n# not a heading\n```\n### B b\n#not one either\n");
    assert_eq!(anchors, ["a", "b-b", "b-b-1"].map(String::from).into_iter().collect());
}

#[test]
fn every_alert_links_its_runbook_section_of_troubleshooting_md() {
    let anchors = markdown_anchors(&read(TROUBLESHOOTING));
    for rule in alert_rules() {
        let alert = rule["alert"].as_str().expect("alert");
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or_else(|| panic!("{alert}: no runbook_url"));
        let (_, anchor) = url
            .split_once(&format!("{TROUBLESHOOTING}#"))
            .unwrap_or_else(|| panic!("{alert}: runbook_url {url} is not a section of {TROUBLESHOOTING}"));
        assert!(anchors.contains(anchor), "{alert}: {TROUBLESHOOTING} has no section #{anchor}");
        assert_eq!(anchor, github_anchor(alert), "{alert}: the runbook is the alert's own section");
    }
}

/// `(alert name, expected alerts)` of every `alert_rule_test` case of [`ALERT_TESTS`].
fn alert_test_cases() -> Vec<(String, usize)> {
    let documents = yaml_documents(ALERT_TESTS);
    let tests = documents[0]["tests"].as_sequence().expect("tests");
    tests
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_sequence().cloned().unwrap_or_default())
        .map(|case| {
            let alert = case["alertname"].as_str().expect("alertname").to_string();
            (alert, case["exp_alerts"].as_sequence().map_or(0, Vec::len))
        })
        .collect()
}

/// A ratio of rates (`x / y` over `rate(` or `increase(`) or a rate of an error counter.
fn is_ratio_or_error_rate(expr: &str) -> bool {
    let ratio = expr.contains(" / ") && (expr.contains("rate(") || expr.contains("increase("));
    ratio || promql_metrics(expr).iter().any(|metric| metric.ends_with("_errors_total"))
}

#[test]
fn every_alert_fires_in_a_unit_test_and_ratios_have_a_traffic_guard_that_keeps_them_quiet() {
    let cases = alert_test_cases();
    let rules = alert_rules();
    let names: BTreeSet<&str> = rules.iter().filter_map(|rule| rule["alert"].as_str()).collect();
    for (alert, _) in &cases {
        assert!(names.contains(alert.as_str()), "{ALERT_TESTS} tests {alert}, which {ALERTS} does not define");
    }
    let mut guarded = 0;
    for rule in &rules {
        let alert = rule["alert"].as_str().expect("alert");
        let expr = rule["expr"].as_str().expect("expr");
        assert!(
            cases.iter().any(|(name, expected)| name == alert && *expected > 0),
            "{ALERT_TESTS}: no test case in which {alert} fires"
        );
        if is_ratio_or_error_rate(expr) {
            guarded += 1;
            assert!(
                expr.lines().any(|line| line.trim_start().starts_with("and ")),
                "{alert}: a ratio or error rate needs a minimum-traffic guard (`and <traffic> > N`): {expr}"
            );
            assert!(
                cases.iter().any(|(name, expected)| name == alert && *expected == 0),
                "{ALERT_TESTS}: no test case in which the traffic guard keeps {alert} quiet"
            );
        }
    }
    assert!(guarded >= 4, "only {guarded} ratio or error-rate alerts found");
}

fn promtool_available() -> bool {
    Command::new("promtool").arg("--version").output().is_ok_and(|output| output.status.success())
}

#[test]
fn promtool_accepts_the_rules_their_tests_and_the_scrape_config() {
    if !promtool_available() {
        assert_ne!(
            std::env::var("IBGW_REQUIRE_PROMTOOL").as_deref(),
            Ok("1"),
            "IBGW_REQUIRE_PROMTOOL=1 but promtool is not on PATH (Debian: apt-get install prometheus)"
        );
        eprintln!("promtool is not on PATH: Prometheus checks skipped (IBGW_REQUIRE_PROMTOOL=1 makes this fail)");
        return;
    }
    for args in [
        ["check", "rules", ALERTS],
        ["test", "rules", ALERT_TESTS],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
    ] {
        let output = Command::new("promtool").args(args).current_dir(root()).output().unwrap();
        assert!(
            output.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

const DOCKERFILE: &str = "deploy/docker/Dockerfile";

/// One Dockerfile instruction: its keyword (upper case) and its arguments, continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

fn dockerfile_instructions(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // a comment between continuation lines
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
                instructions.push(Instruction { keyword: keyword.to_uppercase(), args: args.trim().to_string() });
                current.clear();
            }
        }
    }
    instructions
}

/// The exec form `["a", "b"]` of CMD, ENTRYPOINT and HEALTHCHECK CMD.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{DOCKERFILE}: `{args}` is not the exec form: {e}"))
}

/// `.dockerignore` patterns; enough of its syntax for ours (directories, `*` globs, no `!` exceptions).
fn docker_ignored(patterns: &[String], path: &str) -> bool {
    fn glob(pattern: &str, text: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == text,
            Some((prefix, rest)) => {
                text.starts_with(prefix)
                    && (prefix.len()..=text.len()).any(|i| text.is_char_boundary(i) && glob(rest, &text[i..]))
            }
        }
    }
    let path = path.trim_start_matches("./");
    patterns.iter().any(|pattern| {
        let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
        // A pattern matches the path itself or any directory above it.
        let mut prefix = String::new();
        path.split('/').any(|part| {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            glob(pattern, &prefix) || (!pattern.contains('/') && glob(pattern, part))
        })
    })
}

#[test]
fn dockerignore_matching_follows_docker() {
    let patterns: Vec<String> = ["target/", "*.log", "/tmp/", "deploy/"].iter().map(|p| p.to_string()).collect();
    assert!(docker_ignored(&patterns, "target/release/x"));
    assert!(docker_ignored(&patterns, "a/b.log"));
    assert!(docker_ignored(&patterns, "deploy/docker/Dockerfile"));
    assert!(!docker_ignored(&patterns, "src/targets.rs"));
    assert!(!docker_ignored(&patterns, "conf/gateway.yaml"));
}

fn cargo_package_field(field: &str) -> String {
    read("Cargo.toml")
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .trim_start()
                .strip_prefix('=')?
                .trim()
                .strip_prefix('"')?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("Cargo.toml: {field}"))
}

#[test]
fn dockerfile_builds_without_the_mock_runs_unprivileged_and_checks_its_health() {
    let instructions = dockerfile_instructions(&read(DOCKERFILE));
    let stages: Vec<usize> =
        instructions.iter().enumerate().filter(|(_, i)| i.keyword == "FROM").map(|(n, _)| n).collect();
    assert!(stages.len() >= 2, "{DOCKERFILE}: a build stage and a runtime stage");
    let builder_name = instructions[stages[0]].args.split_whitespace().last().unwrap().to_string();
    assert!(instructions[stages[0]].args.to_lowercase().contains(" as "), "the build stage is named");
    let runtime = &instructions[*stages.last().unwrap()..];
    let in_runtime = |keyword: &'static str| runtime.iter().filter(move |i| i.keyword == keyword);

    // The build: locked, release, and without default features (the mock platform is one).
    let build = instructions[..*stages.last().unwrap()]
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("a RUN with cargo build in the build stage");
    for flag in ["--profile dist", "--locked", "--no-default-features"] {
        assert!(build.args.contains(flag), "{DOCKERFILE}: cargo build without {flag}");
    }

    // Runs as a non-root user.
    let user = in_runtime("USER").next_back().expect("USER in the runtime stage").args.clone();
    let name = user.split(':').next().unwrap();
    assert!(!matches!(name, "root" | "0" | ""), "{DOCKERFILE}: USER {user}");

    // HEALTHCHECK runs the gateway's own `health` subcommand, the binary the image runs.
    let entrypoint = exec_form(&in_runtime("ENTRYPOINT").next_back().expect("ENTRYPOINT").args);
    let healthcheck = in_runtime("HEALTHCHECK").next_back().expect("HEALTHCHECK in the runtime stage");
    let command = healthcheck.args.split_once("CMD").expect("HEALTHCHECK ... CMD [...]").1.trim();
    let command = exec_form(command);
    assert_eq!(command.first(), entrypoint.first(), "the health check runs the gateway binary");
    assert_eq!(command.get(1).map(String::as_str), Some("health"), "{command:?}");
    // `health` finds the admin listener through IBGW_CONFIG, which must name the configuration the image copies.
    let config = in_runtime("ENV")
        .find_map(|i| i.args.strip_prefix("IBGW_CONFIG=").map(str::to_string))
        .expect("ENV IBGW_CONFIG=... in the runtime stage");
    assert!(
        in_runtime("COPY").any(|i| i.args.split_whitespace().last() == Some(config.as_str())),
        "IBGW_CONFIG={config}, which no COPY provides"
    );

    // OCI labels.
    let labels: String = in_runtime("LABEL").map(|i| i.args.clone()).collect::<Vec<_>>().join(" ");
    let args: String = in_runtime("ARG").map(|i| i.args.clone()).collect::<Vec<_>>().join(" ");
    for key in ["title", "description", "licenses", "source", "version"] {
        assert!(labels.contains(&format!("org.opencontainers.image.{key}=")), "{DOCKERFILE}: no {key} label");
    }
    let license = cargo_package_field("license");
    assert!(labels.contains(&format!("org.opencontainers.image.licenses=\"{license}\"")), "{labels}");
    let version = cargo_package_field("version");
    assert!(args.contains(&format!("VERSION={version}")), "ARG VERSION is not Cargo.toml's {version}: {args}");

    // Every COPY from the build context names a file or directory the context has.
    let ignore: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert!(ignore.iter().all(|p| !p.starts_with('!')), ".dockerignore exceptions are not supported by this check");
    for copy in instructions.iter().filter(|i| i.keyword == "COPY" || i.keyword == "ADD") {
        let words: Vec<&str> = copy.args.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from=")) {
            assert!(copy.args.contains(&format!("--from={builder_name}")), "{}", copy.args);
            continue;
        }
        let sources: Vec<&str> = words.iter().copied().filter(|w| !w.starts_with("--")).collect();
        for source in &sources[..sources.len() - 1] {
            assert!(root().join(source).exists(), "{DOCKERFILE}: COPY {source}: no such file in the repository");
            if *source != "." {
                assert!(!docker_ignored(&ignore, source), "{DOCKERFILE}: COPY {source}, which .dockerignore excludes");
            }
        }
    }
    // `COPY . .` must bring what `cargo build` reads.
    let mut needed: Vec<String> =
        ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml", "src/main.rs", "src/lib.rs"].map(String::from).to_vec();
    let mut sources = Vec::new();
    collect_files(&root().join("src"), &mut sources);
    needed.extend(sources.iter().map(|p| relative(p)));
    needed.extend(std::fs::read_dir(root().join("benches")).unwrap().map(|e| relative(&e.unwrap().path())));
    for file in needed {
        assert!(!docker_ignored(&ignore, &file), ".dockerignore excludes {file}, which the build needs");
    }
}

/// `[profile.NAME]`'s `key = value` lines of Cargo.toml, values as written.
fn cargo_profile(name: &str) -> Vec<(String, String)> {
    let manifest = read("Cargo.toml");
    let header = format!("[profile.{name}]");
    let section = manifest.split(&header).nth(1).unwrap_or_else(|| panic!("Cargo.toml has no {header}"));
    section
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

#[test]
fn dockerfile_pins_its_base_images_passes_the_commit_and_ships_a_stripped_binary() {
    let text = read(DOCKERFILE);
    let instructions = dockerfile_instructions(&text);
    let stages: Vec<String> = instructions
        .iter()
        .filter(|i| i.keyword == "FROM")
        .filter_map(|i| i.args.split_whitespace().nth(2).map(str::to_string))
        .collect();
    for from in instructions.iter().filter(|i| i.keyword == "FROM") {
        let image = from.args.split_whitespace().find(|w| !w.starts_with("--")).expect("FROM IMAGE");
        if stages.iter().any(|stage| stage == image) {
            continue; // an earlier stage of this file
        }
        let digest = image.split_once("@sha256:").map(|(_, digest)| digest);
        assert!(
            digest.is_some_and(|d| d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit() && !c.is_uppercase())),
            "{DOCKERFILE}: FROM {image} is not pinned by digest (IMAGE:TAG@sha256:...)"
        );
    }
    assert!(text.contains("docker buildx imagetools inspect"), "{DOCKERFILE}: say how to find a new digest");

    // build.rs reads IBGW_GIT_SHA from the build's environment: the build stage declares it before building,
    // and the documented build command passes it.
    let last_stage = instructions.iter().rposition(|i| i.keyword == "FROM").unwrap();
    let build = instructions[..last_stage]
        .iter()
        .position(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("cargo build in the build stage");
    let declared = instructions[..build]
        .iter()
        .rposition(|i| i.keyword == "ARG" && i.args.split('=').next() == Some("IBGW_GIT_SHA"));
    let stage_start = instructions[..build].iter().rposition(|i| i.keyword == "FROM").unwrap();
    assert!(declared.is_some_and(|at| at > stage_start), "{DOCKERFILE}: no ARG IBGW_GIT_SHA before cargo build");
    assert!(text.contains("--build-arg IBGW_GIT_SHA=\"$(git rev-parse"), "{DOCKERFILE}: the build command");

    // The shipped binary is the `dist` profile, which strips what the release profile keeps for perf.
    let dist = cargo_profile("dist");
    let value = |key: &str| dist.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(value("inherits"), Some("\"release\""), "{dist:?}");
    assert!(matches!(value("strip"), Some("\"debuginfo\"" | "\"symbols\"" | "true")), "{dist:?}");
    assert!(instructions[build].args.contains("target/dist/ib-oauth-gateway"), "the image installs the dist build");
}

#[test]
fn dockerfile_healthcheck_is_a_command_the_gateway_binary_has() {
    let instructions = dockerfile_instructions(&read(DOCKERFILE));
    let healthcheck = instructions.iter().rfind(|i| i.keyword == "HEALTHCHECK").expect("HEALTHCHECK");
    let command = exec_form(healthcheck.args.split_once("CMD").expect("CMD").1.trim());
    let config = instructions
        .iter()
        .find_map(|i| i.args.strip_prefix("IBGW_CONFIG=").filter(|_| i.keyword == "ENV").map(str::to_string))
        .expect("ENV IBGW_CONFIG");
    let source = instructions
        .iter()
        .filter(|i| i.keyword == "COPY")
        .find_map(|i| {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            (words.last() == Some(&config.as_str())).then(|| words[words.len() - 2].to_string())
        })
        .expect("the COPY that provides IBGW_CONFIG");
    // With the configuration the image copies and nothing listening on its admin port, the command runs and
    // reports "not ready" (1); a subcommand or flag the binary lacks would be a usage error (2).
    let output = Command::new(env!("CARGO_BIN_EXE_ib-oauth-gateway"))
        .args(&command[1..])
        .env("IBGW_CONFIG", root().join(&source))
        .output()
        .unwrap();
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "HEALTHCHECK {command:?}: exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}
