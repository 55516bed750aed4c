output "enabled" {
  description = "Whether the collector sidecar, its configuration and its role are created (metrics). The alert policies and the dashboard are created either way."
  value       = var.metrics
}

output "metrics" {
  description = "The metrics the service exports (metrics.json): OTLP name, kind, unit, attributes and Managed Service for Prometheus name."
  value       = local.metrics
}

output "collector" {
  description = "The collector sidecar container: name, image, args, resources, config volume and mount, health port and path (startup probe), OTLP/HTTP port. null without metrics."
  value       = var.metrics ? local.collector : null
}

output "collector_config" {
  description = "The collector's configuration, as an object. null without metrics."
  value       = var.metrics ? local.collector_config : null
}

output "collector_config_yaml" {
  description = "The collector's configuration file (config.yaml in its Secret Manager secret). null without metrics."
  value       = var.metrics ? yamlencode(local.collector_config) : null
}

output "main_container_name" {
  description = "Name of the service's container, which depends_on names: set only with metrics (a single container needs none)."
  value       = var.metrics ? "bridge" : null
}

output "main_depends_on" {
  description = "Containers the service's container starts after (Cloud Run waits for their startup probes). null without metrics."
  value       = var.metrics ? [local.collector.name] : null
}

output "cpu_idle" {
  description = "Cloud Run cpu_idle: false with metrics, so that the collector and the service's periodic export run between requests (CPU only during requests would stall them); true (CPU only during requests) without."
  value       = !var.metrics
}

output "runtime_roles" {
  description = "Project roles the runtime service account gets for the collector's export: roles/monitoring.metricWriter with metrics, none without."
  value       = var.metrics ? ["roles/monitoring.metricWriter"] : []
}

output "apis" {
  description = "Google APIs the monitoring needs: Cloud Monitoring (the alert policies and the dashboard), and Secret Manager (the collector's configuration) with metrics."
  value       = var.metrics ? ["monitoring.googleapis.com", "secretmanager.googleapis.com"] : ["monitoring.googleapis.com"]
}

output "alert_policies" {
  description = "Alert policies by key: display_name, severity, documentation and either a threshold condition (filter, comparison, threshold_value, duration, aligner, period) or a PromQL condition (query, duration, evaluation_interval). The Pub/Sub ones watch Pub/Sub's own metrics; the lag one reads the service's, which only the collector (metrics) exports."
  value       = local.alert_policies
}

output "notification_channels" {
  description = "Notification channels of the alert policies."
  value       = var.notification_channels
}

output "dashboard_json" {
  description = "The Cloud Monitoring dashboard (dashboard_json of google_monitoring_dashboard): the service's metrics (exported with metrics) and its subscriptions' backlog."
  value       = local.dashboard_json
}
