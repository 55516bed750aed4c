#!/usr/bin/env python3
"""How the Google half uses terraform/modules/monitoring, read from its HCL.

The Google provider cannot be had here, so the gcp module is never planned.
What the monitoring is (collector container, roles, alert policies,
dashboard) is computed by the provider-free terraform/modules/monitoring,
which tests/integration/terraform_monitoring.rs renders with metrics on and
off; this check makes sure that the gcp module builds its resources from
exactly those outputs, so that "metrics = false" creates no collector, no
secret and no role (the alert policies and the dashboard are created either
way):

- the root module passes `metrics` to the gcp module, which passes it to
  modules/monitoring and modules/service-env (OTEL_EXPORTER_OTLP_ENDPOINT);
- the Cloud Run service's container takes its env from service-env and its
  name, depends_on and cpu_idle from monitoring; the collector container and
  its config volume are dynamic blocks over `module.monitoring.collector`,
  the probe on its health port;
- the collector's Secret Manager secret, version and accessor binding are
  counted by `module.monitoring.enabled`;
- the runtime account's project roles iterate over
  `module.monitoring.runtime_roles`;
- the alert policies iterate over `module.monitoring.alert_policies`, with a
  threshold and a PromQL condition block each from the policy's own fields;
- the dashboard is one resource, not counted, whose JSON is
  `module.monitoring.dashboard_json`.

Usage: deploy/check_monitoring_wiring.py (from the repository root, with
python-hcl2, which checkov brings, importable). Prints one line per problem
and exits 1 if there is any.
"""

import sys
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parent.parent
problems = []


def load(*parts):
    merged = {}
    for f in sorted((ROOT.joinpath(*parts)).glob("*.tf")):
        with open(f) as fh:
            for k, v in hcl2.load(fh).items():
                merged.setdefault(k, []).extend(v)
    return merged


def one(v):
    """python-hcl2 wraps attribute values and blocks in lists."""
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    return v


def expr(v):
    return str(one(v)).replace(" ", "")


def expect(cond, what):
    if not cond:
        problems.append(what)


def resource(doc, rtype, name):
    for r in doc.get("resource", []):
        if rtype in r and name in r[rtype]:
            return r[rtype][name]
    problems.append(f"no {rtype}.{name}")
    return {}


def module(doc, name):
    for m in doc.get("module", []):
        if name in m:
            return m[name]
    problems.append(f"no module {name}")
    return {}


def dynamic(block, name):
    for d in block.get("dynamic", []):
        if name in d:
            return d[name]
    return None


root = load("terraform")
gcp = load("terraform", "modules", "gcp")

expect(expr(module(root, "gcp").get("metrics")) == "${var.metrics}", "root: module gcp does not get metrics = var.metrics")
mon = module(gcp, "monitoring")
expect(one(mon.get("source")) == "../monitoring", "gcp: module monitoring is not ../monitoring")
expect(expr(mon.get("metrics")) == "${var.metrics}", "gcp: module monitoring does not get metrics = var.metrics")
expect(expr(module(gcp, "env").get("metrics")) == "${var.metrics}", "gcp: module env does not get metrics = var.metrics")

svc = resource(gcp, "google_cloud_run_v2_service", "this")
template = one(svc.get("template", [{}]))
mains = template.get("containers", [])
expect(len(mains) == 1, f"gcp: {len(mains)} static containers, want the service's alone")
main = one(mains) if mains else {}
expect(expr(main.get("name")) == "${module.monitoring.main_container_name}", "gcp: the service's container name is not module.monitoring.main_container_name")
expect(expr(main.get("depends_on")) == "${module.monitoring.main_depends_on}", "gcp: the service's container depends_on is not module.monitoring.main_depends_on")
expect(expr(one(main.get("resources", [{}])).get("cpu_idle")) == "${module.monitoring.cpu_idle}", "gcp: the service's cpu_idle is not module.monitoring.cpu_idle")
env = dynamic(main, "env")
expect(env is not None and expr(env.get("for_each")) == "${module.env.env}", "gcp: the service's env is not module.env.env")

collector = dynamic(template, "containers")
expect(collector is not None and "module.monitoring.collector" in expr(collector.get("for_each")), "gcp: no dynamic collector container over module.monitoring.collector")
if collector:
    content = one(collector.get("content"))
    probe = one(one(content.get("startup_probe", [{}])).get("http_get", [{}]))
    expect(expr(probe.get("port")) == "${containers.value.health_port}", "gcp: the collector's startup probe is not on its health port")
    expect(not content.get("ports"), "gcp: the collector has a port (the service's container is the only ingress)")
    mount = one(content.get("volume_mounts", [{}]))
    expect(expr(mount.get("mount_path")) == "${containers.value.config_dir}", "gcp: the collector's config is not mounted at its config_dir")
volumes = dynamic(template, "volumes")
expect(volumes is not None and "module.monitoring.collector" in expr(volumes.get("for_each")), "gcp: no dynamic config volume over module.monitoring.collector")
if volumes:
    secret = one(one(volumes.get("content")).get("secret", [{}]))
    expect("google_secret_manager_secret.collector_config" in expr(secret.get("secret")), "gcp: the config volume is not the collector_config secret")

for rtype in ("google_secret_manager_secret", "google_secret_manager_secret_version", "google_secret_manager_secret_iam_member"):
    r = resource(gcp, rtype, "collector_config")
    expect(expr(r.get("count")) == "${module.monitoring.enabled?1:0}", f"gcp: {rtype}.collector_config is not counted by module.monitoring.enabled")
expect(
    expr(resource(gcp, "google_secret_manager_secret_version", "collector_config").get("secret_data")) == "${module.monitoring.collector_config_yaml}",
    "gcp: the secret's data is not module.monitoring.collector_config_yaml",
)

roles = resource(gcp, "google_project_iam_member", "runtime_monitoring")
expect(expr(roles.get("for_each")) == "${toset(module.monitoring.runtime_roles)}", "gcp: runtime_monitoring does not iterate over module.monitoring.runtime_roles")
expect("google_service_account.runtime.email" in expr(roles.get("member")), "gcp: runtime_monitoring is not the runtime account's")

alerts = resource(gcp, "google_monitoring_alert_policy", "this")
expect(expr(alerts.get("for_each")) == "${module.monitoring.alert_policies}", "gcp: the alert policies do not iterate over module.monitoring.alert_policies")
expect(expr(alerts.get("notification_channels")) == "${module.monitoring.notification_channels}", "gcp: the alert policies' channels are not module.monitoring.notification_channels")
cond = one(alerts.get("conditions", [{}]))
threshold = dynamic(cond, "condition_threshold")
promql = dynamic(cond, "condition_prometheus_query_language")
expect(threshold is not None and "each.value.threshold" in expr(threshold.get("for_each")), "gcp: no threshold condition from each.value.threshold")
expect(promql is not None and "each.value.promql" in expr(promql.get("for_each")), "gcp: no PromQL condition from each.value.promql")

dash = resource(gcp, "google_monitoring_dashboard", "this")
expect(dash.get("count") is None, "gcp: the dashboard is counted; it is created with or without metrics")
expect(expr(dash.get("dashboard_json")) == "${module.monitoring.dashboard_json}", "gcp: the dashboard's JSON is not module.monitoring.dashboard_json")

for p in problems:
    print(p)
if not problems:
    print("gcp module: collector sidecar, secret, role, alert policies and dashboard come from modules/monitoring")
sys.exit(1 if problems else 0)
