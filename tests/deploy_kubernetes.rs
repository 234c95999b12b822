//! The Kubernetes manifests work when applied as documented. There is no cluster here, so the test renders
//! `deploy/kubernetes/` the way `kubectl apply -k` would (`kubectl kustomize` when kubectl is installed, else a
//! reader of the subset of kustomize the directory uses) and checks the rendered objects against each other and
//! against the gateway: every file the configuration reads is a key of the Secret (as the documented
//! `kubectl create secret` makes it) or of the ConfigMap, mounted at the path the configuration names; every
//! environment variable it reads is set; everything it writes is on a writable volume; every probe and Service
//! port is a port of the container and of the configuration; the admin port is open to the monitoring
//! namespace only, as the README says.

mod common;

use common::secrets::{secret_references, with_local_secrets, ENV_SECRET};
use common::BIN;
use serde::Deserialize;
use serde_norway::Value as Yaml;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const DIR: &str = "deploy/kubernetes";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repository().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn documents(text: &str) -> Vec<Yaml> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| Yaml::deserialize(document).expect("YAML"))
        .filter(|document| !document.is_null())
        .collect()
}

fn strings(value: &Yaml) -> Vec<String> {
    value.as_sequence().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

/// The subset of kustomize `deploy/kubernetes/` uses: `resources` (files), `configMapGenerator` (files, named
/// `NAME-HASH`, the name written into the volumes that mount `NAME`) and `labels`.
fn render_without_kubectl(dir: &Path) -> Vec<Yaml> {
    let kustomization: Yaml = serde_norway::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
        .expect("kustomization.yaml");
    let known = ["apiVersion", "kind", "resources", "configMapGenerator", "labels"];
    for key in kustomization.as_mapping().unwrap().keys() {
        let key = key.as_str().unwrap();
        assert!(known.contains(&key), "kustomization.yaml uses `{key}`, which this reader does not: install kubectl");
    }
    let mut objects: Vec<Yaml> = strings(&kustomization["resources"])
        .iter()
        .flat_map(|resource| documents(&std::fs::read_to_string(dir.join(resource)).unwrap()))
        .collect();
    let mut renamed = Vec::new();
    for generator in kustomization["configMapGenerator"].as_sequence().into_iter().flatten() {
        let name = generator["name"].as_str().expect("generator name");
        let generated = format!("{name}-rendered");
        let mut data = serde_norway::Mapping::new();
        for file in strings(&generator["files"]) {
            let (key, path) = file.split_once('=').unwrap_or((file.as_str(), file.as_str()));
            let key = Path::new(key).file_name().unwrap().to_str().unwrap();
            data.insert(key.into(), std::fs::read_to_string(dir.join(path)).unwrap().into());
        }
        let configmap = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {generated}}}\n");
        let mut configmap: Yaml = serde_norway::from_str(&configmap).unwrap();
        configmap["data"] = Yaml::Mapping(data);
        objects.push(configmap);
        renamed.push((name.to_string(), generated));
    }
    for object in objects.iter_mut().filter(|o| o["kind"] == "Deployment") {
        for volume in object["spec"]["template"]["spec"]["volumes"].as_sequence_mut().into_iter().flatten() {
            if let Some((_, generated)) = renamed.iter().find(|(name, _)| volume["configMap"]["name"] == name.as_str())
            {
                volume["configMap"]["name"] = generated.clone().into();
            }
        }
    }
    objects
}

/// `deploy/kubernetes/` rendered as `kubectl apply -k` would apply it.
fn render() -> Vec<Yaml> {
    let dir = repository().join(DIR);
    match Command::new("kubectl").arg("kustomize").arg(&dir).output() {
        Ok(output) => {
            assert!(output.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&output.stderr));
            documents(&String::from_utf8(output.stdout).unwrap())
        }
        Err(_) => {
            eprintln!("kubectl is not on PATH: rendering with the test's own kustomize reader");
            render_without_kubectl(&dir)
        }
    }
}

fn one<'a>(objects: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

/// The keys of the Secret as the documented command creates it (`--from-file=KEY=...`, `--from-literal=KEY=...`):
/// the same in secret.example.yaml and both READMEs.
fn documented_secret_keys() -> BTreeSet<String> {
    let keys_in = |text: &str| -> BTreeSet<String> {
        let command = text.split("create secret generic ib-oauth-gateway").nth(1).expect("kubectl create secret");
        let command: String = command
            .lines()
            .take_while(|l| !l.trim().trim_start_matches('#').trim().is_empty() && !l.contains("```"))
            .collect::<Vec<_>>()
            .join(" ");
        command
            .split_whitespace()
            .filter_map(|word| word.strip_prefix("--from-file=").or_else(|| word.strip_prefix("--from-literal=")))
            .map(|spec| spec.split('=').next().unwrap().to_string())
            .collect()
    };
    let example = keys_in(&read(&format!("{DIR}/secret.example.yaml")));
    for readme in [format!("{DIR}/README.md"), "README.md".to_string()] {
        assert_eq!(example, keys_in(&read(&readme)), "secret.example.yaml and {readme} create different Secrets");
    }
    example
}

/// The files (absolute paths) a mounted Secret or ConfigMap provides; none for other volumes.
fn volume_files(volume: &Yaml, mount_path: &str, objects: &[Yaml], secret_keys: &BTreeSet<String>) -> Vec<String> {
    let items = |source: &Yaml| -> Option<Vec<String>> {
        source["items"]
            .as_sequence()
            .map(|items| items.iter().map(|i| i["path"].as_str().unwrap().to_string()).collect())
    };
    let names: Vec<String> = if volume["secret"].is_mapping() {
        assert_eq!(volume["secret"]["secretName"], "ib-oauth-gateway", "{volume:?}");
        items(&volume["secret"]).unwrap_or_else(|| secret_keys.iter().cloned().collect())
    } else if volume["configMap"].is_mapping() {
        let name = volume["configMap"]["name"].as_str().unwrap();
        let configmap = objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no ConfigMap {name} is rendered"));
        let keys = configmap["data"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_string()).collect();
        items(&volume["configMap"]).unwrap_or(keys)
    } else {
        Vec::new()
    };
    names.iter().map(|name| format!("{}/{name}", mount_path.trim_end_matches('/'))).collect()
}

/// The rendered Deployment's gateway container and the text of the configuration file it runs with.
fn gateway(objects: &[Yaml]) -> (Yaml, String) {
    let deployment = one(objects, "Deployment");
    let container = deployment["spec"]["template"]["spec"]["containers"][0].clone();
    let args = strings(&container["args"]);
    let at = args.iter().position(|a| a == "--config").expect("args: --config FILE");
    let config_path = args[at + 1].clone();
    let pod = &deployment["spec"]["template"]["spec"];
    let secret_keys = documented_secret_keys();
    let text = mounts(&container, pod)
        .into_iter()
        .find_map(|(mount, volume)| {
            let files = volume_files(&volume, mount["mountPath"].as_str().unwrap(), objects, &secret_keys);
            files.contains(&config_path).then(|| {
                let name = config_path.rsplit('/').next().unwrap();
                let configmap = volume["configMap"]["name"].as_str().expect("the configuration is a ConfigMap");
                let object = objects.iter().find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == configmap);
                object.unwrap()["data"][name].as_str().unwrap().to_string()
            })
        })
        .unwrap_or_else(|| panic!("--config {config_path}: no volume provides it"));
    (container, text)
}

/// `deploy/kubernetes/` rendered, with the gateway container and its configuration.
struct Rendered {
    objects: Vec<Yaml>,
    container: Yaml,
    text: String,
    config: Yaml,
}

impl Rendered {
    fn new() -> Self {
        let objects = render();
        let (container, text) = gateway(&objects);
        let config = serde_norway::from_str(&text).expect("the configuration is YAML");
        Rendered { objects, container, text, config }
    }

    /// The pod spec of the Deployment.
    fn pod(&self) -> &Yaml {
        &one(&self.objects, "Deployment")["spec"]["template"]["spec"]
    }

    /// The port of `server.admin_listen`.
    fn admin_port(&self) -> u64 {
        port_of(self.config["server"]["admin_listen"].as_str().expect("server.admin_listen"))
    }
}

/// `(volumeMount, volume)` of every mount of the container.
fn mounts(container: &Yaml, pod: &Yaml) -> Vec<(Yaml, Yaml)> {
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .map(|mount| {
            let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("the mount's volume");
            (mount.clone(), volume.clone())
        })
        .collect()
}

#[test]
fn every_file_and_variable_the_configuration_reads_is_mounted_or_set_where_it_names_it() {
    let Rendered { objects, container, text, config } = Rendered::new();
    let deployment = one(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let secret_keys = documented_secret_keys();
    let provided: Vec<String> = mounts(&container, pod)
        .iter()
        .flat_map(|(mount, volume)| volume_files(volume, mount["mountPath"].as_str().unwrap(), &objects, &secret_keys))
        .collect();
    let (files, env) = secret_references(&config);
    assert!(files.iter().any(|f| f.ends_with("/signing.key")), "replicas share the signing key from the Secret");
    assert!(config["admin"]["token"]["file"].is_string(), "the admin API's token comes from the Secret");
    for file in &files {
        assert!(provided.contains(file), "gateway.yaml reads {file}; the pod has {provided:?}");
    }
    for name in &env {
        let variable = container["env"].as_sequence().into_iter().flatten().find(|e| e["name"] == name.as_str());
        let variable = variable.unwrap_or_else(|| panic!("gateway.yaml reads ${name}, the container does not set it"));
        let key = &variable["valueFrom"]["secretKeyRef"];
        if key.is_mapping() {
            let key = key["key"].as_str().unwrap();
            assert!(secret_keys.contains(key), "${name} comes from Secret key {key}, which the Secret lacks");
        }
    }
    // With those files present, the configuration passes check-config.
    let dir = tempfile::tempdir().unwrap();
    let (local, _) = with_local_secrets(&text, dir.path());
    let local_file = dir.path().join("gateway.yaml");
    std::fs::write(&local_file, local).unwrap();
    let mut check = Command::new(BIN);
    check.arg("check-config").arg(&local_file);
    for name in &env {
        check.env(name, ENV_SECRET);
    }
    let output = check.output().unwrap();
    assert!(output.status.success(), "check-config: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn everything_the_gateway_writes_is_on_a_writable_volume() {
    let rendered = Rendered::new();
    let (container, config) = (&rendered.container, &rendered.config);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true));
    let mut written = vec![config["server"]["upgrade_sock"].clone(), config["server"]["pid_file"].clone()];
    if let Some(path) = config["logging"]["audit"].as_str().and_then(|a| a.strip_prefix("file ")) {
        written.push(path.into());
    }
    let mounts = mounts(container, rendered.pod());
    for path in written.iter().map(|p| p.as_str().expect("a path")) {
        let (mount, volume) = mounts
            .iter()
            .filter(|(m, _)| Path::new(path).starts_with(m["mountPath"].as_str().unwrap()))
            .max_by_key(|(m, _)| m["mountPath"].as_str().unwrap().len())
            .unwrap_or_else(|| panic!("{path} is on the read-only root filesystem"));
        assert!(volume["emptyDir"].is_mapping() && mount["readOnly"] != true, "{path} is not on a writable volume");
    }
}

/// The port of `host:port`.
fn port_of(listen: &str) -> u64 {
    listen.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("{listen}: no port"))
}

#[test]
fn every_probe_and_service_port_is_a_port_the_gateway_listens_on() {
    let rendered = Rendered::new();
    let (objects, container, config) = (&rendered.objects, &rendered.container, &rendered.config);
    let admin = rendered.admin_port();
    let listen: Vec<u64> = strings(&config["server"]["listen"]).iter().map(|l| port_of(l)).collect();
    let ports = container["ports"].as_sequence().expect("container ports");
    let resolve = |port: &Yaml| -> u64 {
        port.as_u64().unwrap_or_else(|| {
            let name = port.as_str().expect("a port number or name");
            let found = ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no container port {name}"));
            found["containerPort"].as_u64().unwrap()
        })
    };
    for port in ports {
        let number = port["containerPort"].as_u64().unwrap();
        assert!(
            number == admin || listen.contains(&number),
            "containerPort {number}: the gateway does not listen on it"
        );
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let port = &container[probe]["httpGet"]["port"];
        assert!(!port.is_null(), "{probe}: an httpGet probe");
        assert_eq!(resolve(port), admin, "{probe} is not on the admin port {admin}");
    }
    for service in objects.iter().filter(|o| o["kind"] == "Service") {
        for port in service["spec"]["ports"].as_sequence().unwrap() {
            let target = resolve(&port["targetPort"]);
            assert!(target == admin || listen.contains(&target), "Service port {port:?}: nothing listens on {target}");
        }
    }
}

#[test]
fn the_admin_port_is_open_only_to_the_namespace_the_readme_names() {
    let rendered = Rendered::new();
    let admin = rendered.admin_port();
    let policy = one(&rendered.objects, "NetworkPolicy");
    let readme = read(&format!("{DIR}/README.md"));
    let rule = policy["spec"]["ingress"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|rule| rule["ports"].as_sequence().is_none_or(|p| p.iter().any(|p| p["port"].as_u64() == Some(admin))))
        .collect::<Vec<_>>();
    assert_eq!(rule.len(), 1, "one rule opens the admin port {admin}");
    let from = rule[0]["from"].as_sequence().expect("the admin rule says from whom");
    assert_eq!(from.len(), 1, "{from:?}");
    let namespace = from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str().unwrap();
    assert!(
        readme.contains(&format!("admin port {admin} only from the `{namespace}` namespace")),
        "README.md does not say the admin port is open to `{namespace}` only"
    );
}

#[test]
fn the_own_reader_renders_what_kubectl_renders() {
    let Ok(output) = Command::new("kubectl").arg("kustomize").arg(repository().join(DIR)).output() else {
        eprintln!("kubectl is not on PATH: the reader is not compared with kustomize");
        return;
    };
    let kubectl = documents(&String::from_utf8(output.stdout).unwrap());
    let own = render_without_kubectl(&repository().join(DIR));
    let kinds = |objects: &[Yaml]| -> BTreeSet<String> {
        objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
            .collect()
    };
    let strip_hash = |set: BTreeSet<String>| -> BTreeSet<String> {
        set.into_iter().map(|k| if k.starts_with("ConfigMap/") { "ConfigMap".to_string() } else { k }).collect()
    };
    assert_eq!(strip_hash(kinds(&kubectl)), strip_hash(kinds(&own)));
    let volumes = |objects: &[Yaml]| one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"].clone();
    let configmap_name = |objects: &[Yaml]| one(objects, "ConfigMap")["metadata"]["name"].clone();
    for objects in [&kubectl, &own] {
        let named =
            volumes(objects).as_sequence().unwrap().iter().any(|v| v["configMap"]["name"] == configmap_name(objects));
        assert!(named, "the Deployment mounts the generated ConfigMap");
    }
}
