//! The Helm chart in charts/accord, checked without helm (it is not a Debian
//! package): every template, with its Go-template directives taken out, must
//! be YAML of an expected kind; RBAC must grant exactly what accord needs; the
//! Deployment must probe health and run unprivileged; values must be declared;
//! the chart's CRDs must be the repository's.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use accord::model::yaml::{self, Limits, Node, Value};

/// What a template's `{{ … }}` value expressions become.
const PLACEHOLDER: &str = "PLACEHOLDER";

const KINDS: [&str; 10] = [
    "Deployment",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "ConfigMap",
    "Secret",
    "ServiceMonitor",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/accord")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The template without its directives: a line holding nothing but
/// directives (`{{- if … }}`, `{{- end }}`, `{{- toYaml . | nindent 8 }}`, …)
/// is dropped, and every other directive becomes the scalar `PLACEHOLDER`.
fn strip_directives(file: &str, text: &str) -> String {
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        let mut kept = String::new();
        let mut directives = 0;
        while let Some(open) = rest.find("{{") {
            let close = rest[open..]
                .find("}}")
                .unwrap_or_else(|| panic!("{file}:{}: a directive spans lines", n + 1));
            kept.push_str(&rest[..open]);
            kept.push_str(PLACEHOLDER);
            directives += 1;
            rest = &rest[open + close + 2..];
        }
        kept.push_str(rest);
        if directives > 0 && kept.replace(PLACEHOLDER, "").trim().is_empty() {
            continue;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The non-empty documents of a YAML text.
fn load(file: &str, text: &str) -> Vec<Node> {
    let docs = yaml::load(text, Limits::default())
        .unwrap_or_else(|e| panic!("{file}:{}: {}\n{text}", e.mark, e.message));
    docs.into_iter()
        .filter_map(|d| d.root)
        .filter(|root| !root.is_null())
        .collect()
}

/// Every manifest of the chart's templates: (file name, document).
fn manifests() -> Vec<(String, Node)> {
    let mut files: Vec<PathBuf> = fs::read_dir(chart().join("templates"))
        .expect("charts/accord/templates")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no templates in charts/accord/templates");
    let mut all = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let docs = load(&name, &strip_directives(&name, &read(&path)));
        assert!(!docs.is_empty(), "{name}: holds no manifest");
        all.extend(docs.into_iter().map(|d| (name.clone(), d)));
    }
    all
}

fn of_kind(kind: &str) -> Vec<(String, Node)> {
    manifests()
        .into_iter()
        .filter(|(_, doc)| str_at(doc, "kind") == kind)
        .collect()
}

fn only(kind: &str) -> Node {
    let mut found = of_kind(kind);
    assert_eq!(found.len(), 1, "expected one {kind}");
    found.pop().unwrap().1
}

/// The node at a dotted path of mapping keys.
fn at<'a>(node: &'a Node, path: &str) -> &'a Node {
    path.split('.').fold(node, |node, key| {
        node.get(key)
            .unwrap_or_else(|| panic!("`{path}`: no `{key}` at line {}", node.mark))
    })
}

/// A scalar's text, whatever it resolves to.
fn scalar(node: &Node) -> String {
    match &node.target().value {
        Value::Scalar { text, .. } => text.clone(),
        _ => panic!(
            "line {}: expected a scalar, found {}",
            node.mark,
            node.describe()
        ),
    }
}

fn str_at(node: &Node, path: &str) -> String {
    scalar(at(node, path))
}

fn seq<'a>(node: &'a Node, path: &str) -> &'a [Node] {
    at(node, path)
        .as_seq()
        .unwrap_or_else(|| panic!("`{path}` is not a list"))
}

fn strings(node: &Node, path: &str) -> Vec<String> {
    seq(node, path).iter().map(scalar).collect()
}

/// The item of a list whose `key` is `value`.
fn item<'a>(items: &'a [Node], key: &str, value: &str) -> &'a Node {
    items
        .iter()
        .find(|i| i.get(key).map(scalar).as_deref() == Some(value))
        .unwrap_or_else(|| panic!("no item with {key}: {value}"))
}

#[test]
fn every_template_is_yaml_of_an_expected_kind_and_together_they_make_the_whole_set() {
    let mut kinds = BTreeSet::new();
    for (file, doc) in manifests() {
        let kind = str_at(&doc, "kind");
        assert!(
            KINDS.contains(&kind.as_str()),
            "{file}: unexpected kind {kind}"
        );
        assert!(
            !str_at(&doc, "apiVersion").is_empty(),
            "{file}: no apiVersion"
        );
        assert!(
            !str_at(&doc, "metadata.name").is_empty(),
            "{file}: no metadata.name"
        );
        kinds.insert(kind);
    }
    let expected: BTreeSet<String> = KINDS.iter().map(|k| k.to_string()).collect();
    assert_eq!(kinds, expected);
}

type Grant = (String, String, String);

fn grants(of: &[(&str, &[&str], &[&str])]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in of {
        for r in *resources {
            for v in *verbs {
                out.insert((group.to_string(), r.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// Every (apiGroup, resource, verb) a role grants; a rule may carry nothing
/// but those and resourceNames, and no wildcard.
fn granted(role: &Node) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in seq(role, "rules") {
        for (key, _) in rule.as_map().expect("a rule is a mapping") {
            let key = scalar(key);
            assert!(
                ["apiGroups", "resources", "verbs", "resourceNames"].contains(&key.as_str()),
                "line {}: rule field `{key}` is not allowed",
                rule.mark
            );
        }
        for g in strings(rule, "apiGroups") {
            for r in strings(rule, "resources") {
                for v in strings(rule, "verbs") {
                    for part in [&g, &r, &v] {
                        assert!(!part.contains('*'), "line {}: wildcard `{part}`", rule.mark);
                    }
                    out.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn crd_grants() -> BTreeSet<Grant> {
    grants(&[
        (
            "accord.dev",
            &["organizations", "permits", "enrollments"],
            &["get", "list", "watch"],
        ),
        (
            "accord.dev",
            &[
                "organizations/status",
                "permits/status",
                "enrollments/status",
            ],
            &["get", "patch", "update"],
        ),
        ("events.k8s.io", &["events"], &["create", "patch"]),
    ])
}

/// Every rule of `role` that grants a verb other than `create` (which
/// Kubernetes cannot narrow by name) is limited to named objects.
fn assert_limited_to_names(role: &Node, what: &str) {
    for rule in seq(role, "rules") {
        let verbs = strings(rule, "verbs");
        if verbs.iter().any(|v| v != "create") {
            let names = rule.get("resourceNames").and_then(|n| n.as_seq());
            assert!(
                names.is_some_and(|n| !n.is_empty()),
                "line {}: {verbs:?} on {what} without resourceNames",
                rule.mark
            );
        }
    }
}

#[test]
fn chart_grants_only_the_crds_events_leases_and_namespaces() {
    let namespaces = grants(&[("", &["namespaces"], &["get", "list", "watch"])]);
    let leases = grants(&[(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    )]);

    // Watching all namespaces: one ClusterRole for the CRDs, Events and
    // Namespaces. Watching listed ones: a ClusterRole that reads just those
    // Namespace objects, and a Role per namespace for the rest.
    let cluster_roles = of_kind("ClusterRole");
    assert_eq!(cluster_roles.len(), 2, "one ClusterRole for each mode");
    let (watch_all, named): (Vec<_>, Vec<_>) = cluster_roles
        .iter()
        .partition(|(_, role)| granted(role).iter().any(|(g, _, _)| g == "accord.dev"));
    assert_eq!(
        watch_all.len(),
        1,
        "one ClusterRole watches every namespace"
    );
    let mut expected = crd_grants();
    expected.extend(namespaces.iter().cloned());
    assert_eq!(
        granted(&watch_all[0].1),
        expected,
        "the all-namespaces ClusterRole"
    );
    assert_eq!(
        named.len(),
        1,
        "one ClusterRole reads the listed namespaces"
    );
    assert_eq!(
        granted(&named[0].1),
        namespaces,
        "the listed-namespaces ClusterRole"
    );
    assert_limited_to_names(&named[0].1, "namespaces");

    let roles = of_kind("Role");
    assert_eq!(
        roles.len(),
        2,
        "a Role per watched namespace and one for the Lease"
    );
    let (lease_roles, watch_roles): (Vec<_>, Vec<_>) = roles
        .iter()
        .partition(|(_, role)| granted(role).iter().any(|(_, r, _)| r == "leases"));
    assert_eq!(lease_roles.len(), 1, "one Role for the Lease");
    assert_eq!(granted(&lease_roles[0].1), leases, "the Lease Role");
    assert_limited_to_names(&lease_roles[0].1, "leases");
    assert_eq!(
        granted(&watch_roles[0].1),
        crd_grants(),
        "the per-namespace Role"
    );
}

#[test]
fn every_role_is_bound_to_the_service_account_alone() {
    let all = manifests();
    let mut bindings = 0;
    for (file, doc) in &all {
        let kind = str_at(doc, "kind");
        let role_kind = match kind.as_str() {
            "ClusterRoleBinding" => "ClusterRole",
            "RoleBinding" => "Role",
            _ => continue,
        };
        bindings += 1;
        assert_eq!(str_at(doc, "roleRef.kind"), role_kind, "{file}");
        let role_name = str_at(doc, "roleRef.name");
        assert!(
            all.iter().any(|(f, d)| f == file
                && str_at(d, "kind") == role_kind
                && str_at(d, "metadata.name") == role_name),
            "{file}: binds {role_kind} {role_name}, which the file does not define"
        );
        let subjects = seq(doc, "subjects");
        assert_eq!(subjects.len(), 1, "{file}: one subject");
        assert_eq!(str_at(&subjects[0], "kind"), "ServiceAccount", "{file}");
    }
    assert_eq!(bindings, 4, "a binding for each of the four roles");
}

#[test]
fn deployment_probes_health_and_runs_unprivileged_on_a_read_only_root() {
    let deployment = only("Deployment");
    let pod = at(&deployment, "spec.template.spec");
    assert!(
        at(&deployment, "spec.template.metadata.annotations")
            .get("checksum/config")
            .is_some(),
        "config changes must roll the pods"
    );

    assert_eq!(str_at(pod, "securityContext.runAsNonRoot"), "true");
    assert_eq!(str_at(pod, "securityContext.runAsUser"), "65532");
    assert_eq!(str_at(pod, "securityContext.fsGroup"), "65532");
    assert_eq!(
        str_at(pod, "securityContext.seccompProfile.type"),
        "RuntimeDefault"
    );

    let containers = seq(pod, "containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        strings(c, "args"),
        ["run", "--config", "/etc/accord/accord.yaml"]
    );
    assert_eq!(
        str_at(item(seq(c, "ports"), "name", "http"), "containerPort"),
        "8080"
    );
    assert_eq!(str_at(c, "livenessProbe.httpGet.path"), "/healthz");
    assert_eq!(str_at(c, "livenessProbe.httpGet.port"), "http");
    assert_eq!(str_at(c, "readinessProbe.httpGet.path"), "/readyz");
    assert_eq!(str_at(c, "readinessProbe.httpGet.port"), "http");
    assert_eq!(str_at(c, "securityContext.readOnlyRootFilesystem"), "true");
    assert_eq!(
        str_at(c, "securityContext.allowPrivilegeEscalation"),
        "false"
    );
    assert_eq!(strings(c, "securityContext.capabilities.drop"), ["ALL"]);

    let env = seq(c, "env");
    at(
        item(env, "name", "ACCORD_DATABASE_URL"),
        "valueFrom.secretKeyRef.key",
    );
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            str_at(item(env, "name", name), "valueFrom.fieldRef.fieldPath"),
            field
        );
    }

    // Writable places on the read-only root: the Git cache and /tmp, each an emptyDir.
    let mounts = seq(c, "volumeMounts");
    let volumes = seq(pod, "volumes");
    for path in ["/var/cache/accord", "/tmp"] {
        let volume = str_at(item(mounts, "mountPath", path), "name");
        assert!(
            item(volumes, "name", &volume).get("emptyDir").is_some(),
            "{path}"
        );
    }
    let config = str_at(item(mounts, "mountPath", "/etc/accord/accord.yaml"), "name");
    at(item(volumes, "name", &config), "configMap.name");
}

#[test]
fn config_map_holds_a_config_with_the_kubernetes_source_and_no_database() {
    let map = only("ConfigMap");
    let text = scalar(
        at(&map, "data")
            .get("accord.yaml")
            .expect("data.accord.yaml"),
    );
    let config = &load("configmap.yaml: accord.yaml", &text)[0];
    // The URL comes from the Secret (ACCORD_DATABASE_URL), never from the ConfigMap.
    assert!(
        config.get("database").is_none(),
        "the database URL belongs in a Secret"
    );
    assert_eq!(str_at(config, "listen"), "0.0.0.0:8080");
    let cache = str_at(config, "cacheDir");
    assert_eq!(cache, "/var/cache/accord");
    let deployment = only("Deployment");
    let mounts = seq(
        &seq(&deployment, "spec.template.spec.containers")[0],
        "volumeMounts",
    );
    item(mounts, "mountPath", &cache);
    for key in ["leaseName", "namespace", "leaseDuration"] {
        at(config, &format!("leaderElection.{key}"));
    }
    let kubernetes = item(seq(config, "sources"), "name", "kubernetes");
    for key in [
        "kubernetes.namespaces",
        "interval",
        "drift",
        "maxDeletePercent",
    ] {
        at(kubernetes, key);
    }
}

#[test]
fn service_and_service_monitor_expose_http_and_metrics() {
    let service = only("Service");
    let port = item(seq(&service, "spec.ports"), "name", "http");
    assert_eq!(str_at(port, "targetPort"), "http");
    let monitor = only("ServiceMonitor");
    assert_eq!(str_at(&monitor, "apiVersion"), "monitoring.coreos.com/v1");
    let endpoint = item(seq(&monitor, "spec.endpoints"), "port", "http");
    assert_eq!(str_at(endpoint, "path"), "/metrics");
}

#[test]
fn chart_crds_are_the_repository_crds_byte_for_byte() {
    let repo_crds = repo().join("crds/accord.dev.yaml");
    let chart_crds = chart().join("crds/accord.dev.yaml");
    let a = fs::read(&repo_crds).unwrap_or_else(|e| panic!("{}: {e}", repo_crds.display()));
    let b = fs::read(&chart_crds).unwrap_or_else(|e| panic!("{}: {e}", chart_crds.display()));
    assert!(
        a == b,
        "{} differs from {}: copy it over",
        chart_crds.display(),
        repo_crds.display()
    );
}

#[test]
fn values_and_chart_metadata_parse_with_the_documented_defaults() {
    let chart_yaml = &load("Chart.yaml", &read(&chart().join("Chart.yaml")))[0];
    assert_eq!(str_at(chart_yaml, "apiVersion"), "v2");
    assert_eq!(str_at(chart_yaml, "name"), "accord");
    assert_eq!(str_at(chart_yaml, "version"), "0.1.0");
    assert_eq!(str_at(chart_yaml, "appVersion"), "0.1.0");

    let values = &load("values.yaml", &read(&chart().join("values.yaml")))[0];
    assert_eq!(str_at(values, "replicas"), "2");
    assert_eq!(str_at(values, "database.secretKey"), "url");
    assert_eq!(str_at(values, "database.existingSecret"), "");
    assert_eq!(str_at(values, "kubernetes.enabled"), "true");
    assert!(
        seq(values, "kubernetes.namespaces").is_empty(),
        "all namespaces by default"
    );
    assert!(seq(values, "extraSources").is_empty());
    assert_eq!(str_at(values, "serviceMonitor.enabled"), "false");
    assert_eq!(str_at(values, "resources.requests.cpu"), "100m");
    assert_eq!(str_at(values, "resources.requests.memory"), "256Mi");
    assert_eq!(str_at(values, "resources.limits.memory"), "512Mi");
}

/// The `.Values.a.b` paths a text refers to.
fn value_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(".Values.") {
        let path: String = text[at + ".Values.".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        out.insert(path.trim_end_matches('.').to_string());
    }
    out
}

/// The names in `include "name"` or `define "name"`.
fn template_names(text: &str, word: &str) -> BTreeSet<String> {
    let needle = format!("{word} \"");
    text.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &text[at + needle.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

#[test]
fn templates_use_only_declared_values_and_defined_helpers() {
    let values = &load("values.yaml", &read(&chart().join("values.yaml")))[0];
    let helpers = read(&chart().join("templates/_helpers.tpl"));
    let defined = template_names(&helpers, "define");
    let mut used_values = 0;
    for entry in fs::read_dir(chart().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = read(&path);
        for name in template_names(&text, "include") {
            assert!(
                defined.contains(&name),
                "{file}: includes undefined `{name}`"
            );
        }
        for value in value_paths(&text) {
            let mut node = values;
            for key in value.split('.') {
                node = node
                    .get(key)
                    .unwrap_or_else(|| panic!("{file}: `.Values.{value}` is not in values.yaml"));
            }
            used_values += 1;
        }
    }
    assert!(
        used_values > 20,
        "found only {used_values} value references"
    );
    assert!(chart().join("templates/NOTES.txt").is_file());
}
