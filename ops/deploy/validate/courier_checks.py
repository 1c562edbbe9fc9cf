"""What no schema knows: Courier's configuration, and how the rendered objects fit together.

- courier.toml (in the ConfigMap the StatefulSet mounts) uses only the sections and keys of
  platform/server/src/config.rs (the server denies unknown fields), with values of their types;
  so do the COURIER_<SECTION>__<KEY> variables of the StatefulSet.
- The pod: listens where the config says, probes /healthz and /readyz there, outlives its drain
  (terminationGracePeriodSeconds > unready grace + drain timeout), meets the "restricted" Pod
  Security Standard, has requests and limits.
- ScyllaDB and Kafka: the contact points, data centre, bootstrap address and shard topic in
  courier.toml name what the ScyllaCluster, Kafka and KafkaTopic objects create; replication
  fits the number of nodes; min.insync.replicas lets one broker be down; the consumer session
  timeout is one the brokers accept.
- Monitoring: the PrometheusRule is ops/prometheus/courier-rules.yml, rule for rule; the
  ServiceMonitor selects a Service of the Courier pods, with the port and the job label the
  rules expect.
- No Secret is committed: the admin token is created by hand.
"""

import glob
import os
import posixpath
import re
import tomllib

import yaml

INTEGER = re.compile(r"^(u8|u16|u32|u64|usize|i32|i64)$")
SOCKET_ADDR = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}$")


def get(doc, path, default=None):
    """doc["a"]["b"][0]... for the path "a.b.0"."""
    node = doc
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return default
    return node


def selects(selector, labels):
    match = (selector or {}).get("matchLabels", selector or {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def config_keys(config_rs):
    """{section: {key: rust type}} from `struct Config` of config.rs and the section structs it
    names (looked up in config.rs, then in the other sources of its crate)."""
    sources = [config_rs] + sorted(
        p
        for p in glob.glob(os.path.join(os.path.dirname(config_rs), "**", "*.rs"), recursive=True)
        if os.path.abspath(p) != os.path.abspath(config_rs)
    )
    structs = {}
    for path in sources:
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
            fields = dict(re.findall(r"^\s*pub (\w+):\s*([\w:<>]+),", m.group(2), re.M))
            structs.setdefault(m.group(1), fields)
    return {section: structs.get(ty, {}) for section, ty in structs.get("Config", {}).items()}


def type_error(rust, value):
    """Why `value` does not fit the Rust type, or None."""
    if INTEGER.match(rust):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok and (value >= 0 or rust[0] == "i") else f"expected {rust}, got {value!r}"
    if rust == "bool":
        return None if isinstance(value, bool) else f"expected a boolean, got {value!r}"
    if rust in ("String", "PathBuf"):
        return None if isinstance(value, str) else f"expected a string, got {value!r}"
    if rust == "SocketAddr":
        ok = isinstance(value, str) and SOCKET_ADDR.match(value)
        return None if ok else f"expected an IP address with a port, got {value!r}"
    return None  # enums such as Durability: the server checks the value


def run(manifests, config_rs, rules_file, report):
    by_kind = {}
    for m in manifests:
        by_kind.setdefault(m.kind, []).append(m)
    servers = [
        m
        for m in by_kind.get("StatefulSet", [])
        if get(m.doc, "metadata.labels", {}).get("app.kubernetes.io/name") == "courier"
    ]
    if len(servers) != 1:
        report.error(
            "rendered manifests", "", f"expected one Courier StatefulSet, found {len(servers)}"
        )
        return
    sts = servers[0]
    keys = config_keys(config_rs)
    toml = check_config(sts, by_kind.get("ConfigMap", []), keys, config_rs, report) or {}
    check_env(sts, keys, config_rs, report)
    check_pod(sts, toml, report)
    check_services(sts, by_kind, report)
    check_scylla(by_kind.get("ScyllaCluster", []), toml, sts, report)
    check_kafka(by_kind, toml, sts, report)
    check_monitoring(by_kind, rules_file, report)
    for m in by_kind.get("Secret", []):
        report.error(
            m,
            "",
            'Secrets are not committed: create them by hand (ops/deploy/README.md, "Installing")',
        )


def container(sts):
    return get(sts.doc, "spec.template.spec.containers.0", {})


def config_path(sts):
    args = container(sts).get("args", [])
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def check_config(sts, configmaps, keys, config_rs, report):
    """The parsed courier.toml of the ConfigMap mounted at --config, or None."""
    path = config_path(sts)
    if path is None:
        report.error(sts, "spec.template.spec.containers[0].args", "no --config FILE")
        return None
    mounts = {v["mountPath"]: v["name"] for v in container(sts).get("volumeMounts", [])}
    volumes = {v["name"]: v for v in get(sts.doc, "spec.template.spec.volumes", [])}
    volume = volumes.get(mounts.get(posixpath.dirname(path)), {})
    cm_name = get(volume, "configMap.name")
    cm = next((c for c in configmaps if c.name == cm_name), None)
    if cm is None:
        report.error(
            sts,
            "spec.template.spec.volumes",
            f"--config {path}: no ConfigMap volume mounted at {posixpath.dirname(path)} "
            "that is in the manifests",
        )
        return None
    key = posixpath.basename(path)
    text = get(cm.doc, "data", {}).get(key)
    if text is None:
        report.error(cm, f"data.{key}", f"missing (the server reads {path})")
        return None
    # Name the file the key was generated from, when there is one.
    where = f"{cm.data_sources[key]} ({cm.label})" if key in cm.data_sources else cm
    field = "" if key in cm.data_sources else f"data.{key} "
    try:
        toml = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        report.error(where, field.strip(), f"not TOML: {e}")
        return None
    for section, values in toml.items():
        if section not in keys:
            report.error(
                where,
                f"{field}[{section}]",
                f"unknown section ({config_rs} has: {', '.join(keys)})",
            )
            continue
        if not isinstance(values, dict):
            report.error(where, f"{field}{section}", "expected a [section]")
            continue
        for name, value in values.items():
            if name not in keys[section]:
                report.error(
                    where,
                    f"{field}[{section}] {name}",
                    f"unknown key ({config_rs} has: {', '.join(keys[section])})",
                )
            elif why := type_error(keys[section][name], value):
                report.error(where, f"{field}[{section}] {name}", why)
    return toml


def check_env(sts, keys, config_rs, report):
    for i, var in enumerate(container(sts).get("env", [])):
        m = re.match(r"^COURIER_([A-Z0-9]+)__([A-Z0-9_]+)$", var.get("name", ""))
        if not m:
            continue
        section, key = m.group(1).lower(), m.group(2).lower()
        if key not in keys.get(section, {}):
            report.error(
                sts,
                f"spec.template.spec.containers[0].env[{i}]",
                f"{var['name']}: {config_rs} has no key {section}.{key}",
            )


def check_pod(sts, toml, report):
    spec = get(sts.doc, "spec.template.spec", {})
    c = container(sts)
    at = "spec.template.spec.containers[0]"
    listen = get(toml, "server.listen", "")
    port = int(listen.rsplit(":", 1)[1]) if ":" in listen else None
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if port is not None and port not in ports.values():
        report.error(sts, f"{at}.ports", f"server.listen is {listen}, no containerPort {port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        action = get(c, f"{probe}.httpGet", {})
        probe_port = ports.get(action.get("port"), action.get("port"))
        if action.get("path") != path or (port is not None and probe_port != port):
            report.error(sts, f"{at}.{probe}", f"expected GET {path} on port {port}")
    drain = get(toml, "server.unready_grace_ms", 0) / 1000 + get(
        toml, "server.drain_timeout_secs", 10
    )
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= drain + 5:
        report.error(
            sts,
            "spec.template.spec.terminationGracePeriodSeconds",
            f"{grace} s does not outlast the drain (unready grace + drain timeout = "
            f"{drain:g} s) by more than 5 s: the pod would be killed mid-drain",
        )
    pod_sc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
    wanted = [
        ("runAsNonRoot", sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True),
        ("allowPrivilegeEscalation", sc.get("allowPrivilegeEscalation") is False),
        ("readOnlyRootFilesystem", sc.get("readOnlyRootFilesystem") is True),
        ("capabilities.drop", "ALL" in get(sc, "capabilities.drop", [])),
        (
            "seccompProfile",
            get(sc, "seccompProfile.type", get(pod_sc, "seccompProfile.type"))
            in ("RuntimeDefault", "Localhost"),
        ),
    ]
    for name, ok in wanted:
        if not ok:
            report.error(
                sts,
                f"{at}.securityContext.{name}",
                "required (restricted Pod Security Standard, read-only root)",
            )
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if get(c, f"resources.{kind}.{resource}") is None:
                report.error(sts, f"{at}.resources.{kind}.{resource}", "missing")


def check_services(sts, by_kind, report):
    labels = get(sts.doc, "spec.template.metadata.labels", {})
    services = {m.name: m for m in by_kind.get("Service", [])}
    governing = services.get(get(sts.doc, "spec.serviceName"))
    if governing is None or get(governing.doc, "spec.clusterIP") != "None":
        report.error(sts, "spec.serviceName", "must name a headless Service of the manifests")
    for m in services.values():
        if get(m.doc, "metadata.labels", {}).get("app.kubernetes.io/name") != "courier":
            continue
        if not selects(get(m.doc, "spec.selector"), labels):
            report.error(m, "spec.selector", f"does not select the pods of {sts.label}")
    pdbs = [
        m
        for m in by_kind.get("PodDisruptionBudget", [])
        if selects(get(m.doc, "spec.selector"), labels)
    ]
    if not pdbs:
        report.error(sts, "", "no PodDisruptionBudget selects its pods")


def endpoints(value):
    """[(host, port)] of a comma-separated host:port list."""
    out = []
    for item in str(value).split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host, int(port) if port.isdigit() else None))
    return out


def check_scylla(clusters, toml, sts, report):
    if get(toml, "store.backend") != "cql":
        return
    if len(clusters) != 1:
        report.error(
            sts, "", f"store.backend is cql: expected one ScyllaCluster, found {len(clusters)}"
        )
        return
    sc = clusters[0]
    ns = get(sc.doc, "metadata.namespace")
    client = f"{sc.name}-client.{ns}.svc"
    for host, port in endpoints(get(toml, "store.cql_contact_points", "")):
        if host not in (client, client + ".cluster.local") or port != 9042:
            report.error(
                sc,
                "",
                f"courier.toml store.cql_contact_points has {host}:{port}; "
                f"this cluster's CQL is {client}:9042",
            )
    dc = get(sc.doc, "spec.datacenter.name")
    if get(toml, "store.cql_datacenter") != dc:
        report.error(
            sc,
            "spec.datacenter.name",
            f"{dc!r} but courier.toml store.cql_datacenter is "
            f"{get(toml, 'store.cql_datacenter')!r}",
        )
    members = sum(r.get("members", 0) for r in get(sc.doc, "spec.datacenter.racks", []))
    rf = get(toml, "store.cql_replication_factor", 3)
    if rf > members:
        report.error(
            sc, "spec.datacenter.racks", f"{members} nodes cannot hold replication factor {rf}"
        )


def check_kafka(by_kind, toml, sts, report):
    if get(toml, "cluster.bus") != "kafka":
        return
    kafkas = by_kind.get("Kafka", [])
    if len(kafkas) != 1:
        report.error(sts, "", f"cluster.bus is kafka: expected one Kafka, found {len(kafkas)}")
        return
    kafka = kafkas[0]
    ns = get(kafka.doc, "metadata.namespace")
    bootstrap = f"{kafka.name}-kafka-bootstrap.{ns}.svc"
    listeners = get(kafka.doc, "spec.kafka.listeners", [])
    plain = [listener["port"] for listener in listeners if not listener.get("tls")]
    for host, port in endpoints(get(toml, "cluster.kafka_brokers", "")):
        if host not in (bootstrap, bootstrap + ".cluster.local") or port not in plain:
            report.error(
                kafka,
                "spec.kafka.listeners",
                f"courier.toml cluster.kafka_brokers has {host}:{port}; this cluster "
                f"bootstraps at {bootstrap} on plaintext port(s) {plain}",
            )
    brokers = sum(
        get(p.doc, "spec.replicas", 0)
        for p in by_kind.get("KafkaNodePool", [])
        if get(p.doc, "metadata.labels", {}).get("strimzi.io/cluster") == kafka.name
        and "broker" in get(p.doc, "spec.roles", [])
    )
    min_isr = get(kafka.doc, "spec.kafka.config", {}).get("min.insync.replicas", 1)
    node_rf = get(toml, "cluster.kafka_replication_factor", 1)
    if not min_isr <= node_rf <= brokers:
        report.error(
            kafka,
            "spec.kafka.config.min.insync.replicas",
            f"courier.toml cluster.kafka_replication_factor {node_rf} must lie between "
            f"min.insync.replicas ({min_isr}) and the broker count ({brokers})",
        )
    config = get(kafka.doc, "spec.kafka.config", {})
    session = get(toml, "cluster.kafka_session_timeout_ms", 6000)
    low = config.get("group.min.session.timeout.ms", 6000)
    high = config.get("group.max.session.timeout.ms", 1800000)
    if not low <= session <= high:
        report.error(
            kafka,
            "spec.kafka.config",
            f"courier.toml cluster.kafka_session_timeout_ms "
            f"{session} lies outside the brokers' group.min/max.session.timeout.ms "
            f"[{low}, {high}]: the consumers could not join",
        )
    name = f"{get(toml, 'cluster.topic_prefix', 'courier')}.shards"
    topics = [
        t for t in by_kind.get("KafkaTopic", []) if get(t.doc, "spec.topicName", t.name) == name
    ]
    if len(topics) != 1:
        report.error(kafka, "", f"expected one KafkaTopic for {name}, found {len(topics)}")
        return
    topic = topics[0]
    if get(topic.doc, "metadata.labels", {}).get("strimzi.io/cluster") != kafka.name:
        report.error(topic, "metadata.labels.strimzi.io/cluster", f"must be {kafka.name}")
    if get(topic.doc, "spec.partitions") != get(toml, "cluster.partitions"):
        report.error(
            topic,
            "spec.partitions",
            f"{get(topic.doc, 'spec.partitions')} but courier.toml "
            f"cluster.partitions is {get(toml, 'cluster.partitions', 'not set')} (the two "
            "must agree, and both are fixed for the life of a deployment)",
        )
    replicas = get(topic.doc, "spec.replicas", 0)
    topic_min_isr = get(topic.doc, "spec.config", {}).get("min.insync.replicas", min_isr)
    if not topic_min_isr < replicas <= brokers:
        report.error(
            topic,
            "spec.replicas",
            f"{replicas} replicas with min.insync.replicas "
            f"{topic_min_isr} on {brokers} brokers: need min.insync.replicas < replicas "
            "<= brokers, so that one broker can be down",
        )


def alerts(rule_file):
    """{alert or record name: (group, rule)} of a rule file's groups."""
    return {
        r.get("alert") or r.get("record"): (g.get("name"), r)
        for g in rule_file.get("groups", [])
        for r in g.get("rules", [])
    }


def check_monitoring(by_kind, rules_file, report):
    with open(rules_file) as f:
        rules = yaml.safe_load(f)
    prs = by_kind.get("PrometheusRule", [])
    if len(prs) != 1:
        report.error(rules_file, "", f"expected one PrometheusRule made from it, found {len(prs)}")
    for pr in prs:
        if get(pr.doc, "spec") != rules:
            ours, theirs = alerts(get(pr.doc, "spec", {})), alerts(rules)
            diff = sorted(a for a in ours.keys() | theirs.keys() if ours.get(a) != theirs.get(a))
            report.error(
                pr,
                "spec",
                f"differs from {rules_file} (rules {', '.join(diff) or 'order'}): "
                "run ops/deploy/prometheusrule.sh",
            )
    jobs = set(re.findall(r'job="([^"]+)"', yaml.safe_dump(rules)))
    services = by_kind.get("Service", [])
    for sm in by_kind.get("ServiceMonitor", []):
        chosen = [
            s
            for s in services
            if selects(get(sm.doc, "spec.selector"), get(s.doc, "metadata.labels", {}))
        ]
        if not chosen:
            report.error(sm, "spec.selector", "selects no Service of the manifests")
        for s in chosen:
            port_names = {p.get("name") for p in get(s.doc, "spec.ports", [])}
            for i, ep in enumerate(get(sm.doc, "spec.endpoints", [])):
                if ep.get("port") not in port_names:
                    report.error(
                        sm, f"spec.endpoints[{i}].port", f"{s.label} has no port {ep.get('port')!r}"
                    )
            job = get(s.doc, "metadata.labels", {}).get(get(sm.doc, "spec.jobLabel", ""), s.name)
            if jobs and job not in jobs:
                report.error(
                    sm,
                    "spec.jobLabel",
                    f"scrapes {s.label} as job {job!r}, the rules expect {sorted(jobs)}",
                )
