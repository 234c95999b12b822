//! The docs cover the code: every configuration key in the schema is documented in docs/operations.md, with the
//! default the code applies, and every endpoint the gateway answers is in docs/api.md; statements that went stale
//! when the code moved on (the session read from the store on every request, the per-IP limit on the TCP peer,
//! a restart for `logging.level`, the Redis key layout, the allocator's ratio) say what the code does now.

use std::collections::BTreeSet;

/// A configuration with every optional part present, so that serializing it shows every key.
const EVERYTHING: &str = r#"
server:
  public_url: https://gateway.example.com
  tls: {listen: ["0.0.0.0:8443"], cert_file: Cargo.toml, key_file: Cargo.toml}
store:
  backend: redis
  redis: {urls: ["redis://127.0.0.1:6379"], username: u, password: "x"}
signing:
  previous: []
oauth:
  clients:
    - client_id: c
      client_secret: "0123456789abcdef0123"
      redirect_uris: ["https://a.example/cb"]
platforms:
  extra_ca_file: Cargo.toml
"#;

fn collect(prefix: &str, value: &serde_norway::Value, keys: &mut BTreeSet<String>) {
    match value {
        serde_norway::Value::Mapping(map) => {
            for (key, child) in map {
                let key = key.as_str().unwrap();
                let path = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
                keys.insert(path.clone());
                collect(&path, child, keys);
            }
        }
        serde_norway::Value::Sequence(items) => {
            if let Some(first) = items.first().filter(|v| v.is_mapping()) {
                collect(&format!("{prefix}[]"), first, keys);
            }
        }
        _ => {}
    }
}

fn schema_keys() -> BTreeSet<String> {
    let config = ib_oauth_gateway::config::load_str(EVERYTHING).unwrap();
    let mut value = serde_norway::to_value(&config).unwrap();
    // `signing.previous[]` entries: add one so that their keys are listed too.
    value["signing"]["previous"] = serde_norway::from_str("[{kid: k, algorithm: EdDSA, public_key: x}]").unwrap();
    value["signing"]["current"] = serde_norway::from_str("{kid: k, private_key: x}").unwrap();
    let mut keys = BTreeSet::new();
    collect("", &value, &mut keys);
    keys
}

#[test]
fn every_config_key_is_documented_in_operations_md() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let keys = schema_keys();
    assert!(keys.contains("store.redis.urls") && keys.contains("oauth.clients[].redirect_uri_patterns"));
    let missing: Vec<_> = keys.iter().filter(|key| !docs.contains(&format!("`{key}`"))).collect();
    assert!(missing.is_empty(), "config keys missing from docs/operations.md: {missing:?}");
}

#[test]
fn every_endpoint_is_documented_in_api_md() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    for endpoint in [
        "/authorize",
        "/authorize/poll",
        "/token",
        "/userinfo",
        "/revoke",
        "/introspect",
        "/register",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource",
        "/.well-known/jwks.json",
        "/proxy/{host}/",
        "/api/v3/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/reload",
        "/admin/sessions",
    ] {
        assert!(docs.contains(endpoint), "docs/api.md does not document {endpoint}");
    }
    for description in [
        "Session has expired",
        "Session refresh limit exceeded",
        "The access token has expired",
        "Invalid or expired access token",
    ] {
        assert!(docs.contains(description), "docs/api.md does not quote `{description}`");
    }
}

/// The rows of the "| key | type | default | meaning |" tables of docs/operations.md: `(key, default cell)`.
fn documented_defaults(docs: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in docs.lines() {
        let line = line.trim();
        if line == "| key | type | default | meaning |" {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        // Split on `|` but not on the escaped `\|` of a type like `memory` \| `redis`.
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut chars = line[1..].chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => cell.push(chars.next().unwrap()),
                '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
                _ => cell.push(c),
            }
        }
        assert!(cells.len() >= 4, "docs/operations.md: a key row with fewer than 4 cells: {line}");
        let key = cells[0].trim_matches('`').to_string();
        rows.push((key, cells[2].clone()));
    }
    rows
}

/// What a documented default says the value is, or `None` when the cell describes rather than states it.
enum Documented {
    /// Required, or an object whose keys have their own rows.
    NotAValue,
    /// Another key's value (`signing.previous[].algorithm` defaults to `signing.algorithm`): absent in the file.
    Inherited,
    /// The YAML the cell shows (`absent` is null).
    Value(serde_norway::Value),
    /// The default client, written out as YAML under the table.
    DefaultClients,
}

fn documented(cell: &str, keys: &BTreeSet<String>) -> Documented {
    if cell.contains("required") || cell == "(defaults below)" {
        return Documented::NotAValue;
    }
    if cell == "absent" {
        return Documented::Value(serde_norway::Value::Null);
    }
    if cell.contains("entry below") {
        return Documented::DefaultClients;
    }
    // The value is the first code span; anything around it (`432000` (120 h)) is commentary.
    let span = cell.split('`').nth(1).unwrap_or_else(|| panic!("default `{cell}` has no `value`"));
    if keys.contains(span) {
        return Documented::Inherited;
    }
    Documented::Value(serde_norway::from_str(span).unwrap_or_else(|e| panic!("default `{span}` is not YAML: {e}")))
}

/// `value` at a dotted path of plain keys.
fn at<'a>(value: &'a serde_norway::Value, path: &str) -> &'a serde_norway::Value {
    path.split('.').fold(value, |value, key| &value[key])
}

/// Drops null entries, which the YAML in the docs leaves out.
fn without_nulls(value: serde_norway::Value) -> serde_norway::Value {
    match value {
        serde_norway::Value::Mapping(map) => serde_norway::Value::Mapping(
            map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect(),
        ),
        serde_norway::Value::Sequence(items) => items.into_iter().map(without_nulls).collect(),
        other => other,
    }
}

#[test]
fn every_documented_default_is_the_code_default() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let minimal = ib_oauth_gateway::config::load_str("server:\n  public_url: https://a.example\n").unwrap();
    let defaults = serde_norway::to_value(&minimal).unwrap();
    // List entries take their defaults field by field: a client and a previous key with only what is required
    // (each list's rows are checked against the entries that leave that field out).
    let dir = tempfile::tempdir().unwrap();
    let (_, public_pem) =
        ib_oauth_gateway::keys::generate_pem(ib_oauth_gateway::config::SigningAlgorithm::EdDSA).unwrap();
    let public_key = dir.path().join("previous.pub");
    std::fs::write(&public_key, public_pem).unwrap();
    let entries_yaml = format!(
        "server: {{public_url: https://a.example}}\n\
         signing:\n  previous: [{{kid: old, public_key: {{file: {}}}}}]\n\
         oauth:\n  clients:\n    - {{client_id: a, redirect_uris: [https://a.example/cb]}}\n    - {{client_id: b, redirect_uri_patterns: ['http://127.0.0.1:{{port}}/cb']}}\n",
        public_key.display()
    );
    let entries_given: serde_norway::Value = serde_norway::from_str(&entries_yaml).unwrap();
    let entries = serde_norway::to_value(ib_oauth_gateway::config::load_str(&entries_yaml).unwrap()).unwrap();

    let keys = schema_keys();
    let rows = documented_defaults(&docs);
    let documented_keys: BTreeSet<String> = rows.iter().map(|(key, _)| key.clone()).collect();
    // Every key but the top-level sections (which have a heading each) has a row.
    let missing: Vec<_> = keys.difference(&documented_keys).filter(|key| key.contains('.')).collect();
    assert!(missing.is_empty(), "keys without a row in docs/operations.md: {missing:?}");
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (key, cell) in &rows {
        assert!(keys.contains(key), "docs/operations.md documents `{key}`, which is not a key");
        let expected = match documented(cell, &keys) {
            Documented::NotAValue => continue,
            Documented::Inherited => serde_norway::Value::Null,
            Documented::Value(value) => value,
            Documented::DefaultClients => {
                let block = docs.split("The default client:").nth(1).expect("the default client's YAML");
                let yaml = block.split("```yaml").nth(1).and_then(|b| b.split("```").next()).expect("```yaml block");
                let shown: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
                let actual = without_nulls(defaults["oauth"]["clients"].clone());
                if shown["oauth"]["clients"] != actual {
                    wrong
                        .push(format!("oauth.clients: docs show {:?}, code has {actual:?}", shown["oauth"]["clients"]));
                }
                checked += 1;
                continue;
            }
        };
        let actual: Vec<serde_norway::Value> = match key.split_once("[].") {
            None => vec![at(&defaults, key).clone()],
            Some((list, field)) => {
                let given = at(&entries_given, list).as_sequence().unwrap();
                let loaded = at(&entries, list).as_sequence().unwrap();
                given
                    .iter()
                    .zip(loaded)
                    .filter(|(given, _)| given.get(field).is_none())
                    .map(|(_, loaded)| loaded[field].clone())
                    .collect()
            }
        };
        assert!(!actual.is_empty(), "{key}: no entry leaves it to its default");
        for actual in actual {
            if actual != expected {
                wrong.push(format!(
                    "{key}: docs say {cell}, code has {}",
                    serde_norway::to_string(&actual).unwrap().trim()
                ));
            }
        }
        checked += 1;
    }
    assert!(wrong.is_empty(), "docs/operations.md defaults that are not the code's:\n{}", wrong.join("\n"));
    assert!(checked >= 50, "only {checked} defaults checked");
}

#[test]
fn registration_limit_zero_is_documented_as_no_limit() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let row = docs.lines().find(|l| l.starts_with("| `oauth.registration.per_ip_per_hour`")).unwrap();
    assert!(row.contains("`0` disables the limit"), "{row}");
    for file in ["docs/operations.md", "docs/troubleshooting.md", "deploy/kubernetes/gateway.yaml"] {
        let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(!text.contains("refuses every registration"), "{file}: 0 disables the limit (src/oauth/register.rs)");
        assert!(!text.contains("would refuse every"), "{file}: 0 disables the limit (src/oauth/register.rs)");
    }
}

/// A file of the repository with every run of whitespace (line breaks included) as one space, so that a phrase
/// is found wherever the text wraps.
fn flat(relative: &str) -> String {
    let text = std::fs::read_to_string(format!("{}/{relative}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{relative}: {e}"));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn no_doc_says_the_session_is_read_from_the_store_on_every_request() {
    // With Redis, hot sessions come from the instance's session cache (src/store/cache.rs).
    for file in ["README.md", "docs/security.md", "docs/api.md", "docs/operations.md", "deploy/kubernetes/README.md"] {
        let text = flat(file);
        for stale in [
            "read from the store on every",
            "read from Redis on every request",
            "reads the session on every proxied request",
            "One Redis round trip per proxied request",
        ] {
            assert!(!text.contains(stale), "{file}: `{stale}`: the Redis session cache serves hot sessions");
        }
    }
}

#[test]
fn api_md_says_the_per_ip_limit_counts_the_client_behind_trusted_proxies_and_ipv6_by_its_64() {
    let api = flat("docs/api.md");
    let paragraph = api.split("**Per-IP rate limit.**").nth(1).expect("the per-IP paragraph");
    let section = paragraph.split(" ## ").next().unwrap();
    assert!(!section.contains("TCP peer address"), "src/limits.rs client_key, src/gateway forwarded_chain: {section}");
    for needed in ["server.trusted_proxies", "X-Forwarded-For", "/64"] {
        assert!(section.contains(needed), "docs/api.md's per-IP paragraph does not mention {needed}: {section}");
    }
}

#[test]
fn troubleshooting_md_says_a_logging_level_change_is_reloaded_not_restarted() {
    let text = flat("docs/troubleshooting.md");
    let sentence = text.split("set `logging.level` to").nth(1).expect("the debug-logging advice");
    let sentence = &sentence[..sentence.find(". ").unwrap_or(sentence.len())];
    assert!(!sentence.contains("and restart"), "logging.level is a live key (src/config/live.rs): {sentence}");
    assert!(sentence.contains("reload"), "{sentence}");
    assert!(ib_oauth_gateway::config::live::LIVE_KEYS.contains(&"logging.level"));
}

#[test]
fn the_kubernetes_configuration_does_not_say_it_is_read_only_at_start() {
    let text = flat("deploy/kubernetes/gateway.yaml");
    assert!(
        !text.contains("only at start"),
        "deploy/kubernetes/gateway.yaml: the gateway reloads (SIGHUP, /admin/reload)"
    );
}

#[test]
fn operations_md_redis_layout_lists_every_key_of_the_redis_store() {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/redis.rs")).unwrap();
    let docs = flat("docs/operations.md");
    let layout =
        docs.split("**Layout and atomicity**").nth(1).expect("the Redis layout").split("**At most").next().unwrap();
    let mut keys = Vec::new();
    for line in source.lines().take_while(|l| l.starts_with("//!")) {
        let Some(item) = line.strip_prefix("//! - ") else { continue };
        // `P:login:<key>`, `P:client:<key>` — ...: every code span before the dash.
        let names = item.split(" — ").next().unwrap();
        for span in names.split('`').skip(1).step_by(2) {
            // The fixed part: up to the first placeholder.
            keys.push(span.split(['<', '{']).next().unwrap().to_string());
        }
    }
    assert!(keys.len() >= 7, "src/store/redis.rs lists its keys: {keys:?}");
    for key in keys {
        assert!(layout.contains(&format!("`{key}")), "docs/operations.md's Redis layout does not list {key}...");
    }
}

#[test]
fn operations_md_quotes_the_allocator_ratio_the_code_and_the_bench_give() {
    let main = flat("src/main.rs");
    let ratio = main.split("mimalloc gave ").nth(1).and_then(|r| r.split('x').next()).expect("src/main.rs: the ratio");
    let docs = flat("docs/operations.md");
    let paragraph = docs.split("**Memory allocator.**").nth(1).expect("the allocator paragraph");
    let paragraph = &paragraph[..paragraph.find("**").unwrap_or(paragraph.len())];
    assert!(paragraph.contains(&format!("{ratio}×")), "docs/operations.md does not quote src/main.rs's {ratio}×");
    assert!(!paragraph.contains("1.48"), "1.48× is measured nowhere: {paragraph}");
}

#[test]
fn no_heading_appears_twice_in_one_doc() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.push(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md").into());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut seen = BTreeSet::new();
        let mut fenced = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            }
            let is_heading = line.starts_with('#') && line.trim_start_matches('#').starts_with(' ');
            if !fenced && is_heading {
                let heading = line.trim_start_matches('#').trim().to_string();
                assert!(seen.insert(heading.clone()), "{}: `{heading}` twice", file.display());
            }
        }
    }
}
