# What monitoring the Cloud Run service gets, computed from the inputs alone
# (no provider): the Google-Built OpenTelemetry Collector sidecar and its
# configuration, the runtime account's extra roles, the alert policies and the
# dashboard. The gcp module builds its resources from these outputs, and
# tests/integration/terraform_monitoring.rs renders this module offline.
#
# The service sends OTLP/HTTP to the collector on localhost:4318
# (OTEL_EXPORTER_OTLP_ENDPOINT, set by ../service-env); the collector exports
# to Google Cloud Managed Service for Prometheus (googlemanagedprometheus), so
# the metrics are queried with PromQL under their Prometheus names
# (metrics.json).

locals {
  metrics_json = jsondecode(file("${path.module}/metrics.json"))
  metrics      = local.metrics_json.metrics

  # The OTLP/HTTP receiver: loopback only, shared with the service container.
  otlp_http_port = 4318
  # The health_check extension: the startup and liveness probes' target.
  health_port = 13133
  health_path = "/"

  config_dir  = "/etc/otelcol-google"
  config_file = "config.yaml"

  # Metrics only: the service logs to stdout (Cloud Logging reads it) and
  # sends no traces, so the collector needs roles/monitoring.metricWriter and
  # nothing else.
  collector_config = {
    receivers = {
      otlp = {
        protocols = {
          http = { endpoint = "localhost:${local.otlp_http_port}" }
        }
      }
    }
    processors = {
      batch = {
        send_batch_max_size = 200
        send_batch_size     = 200
        timeout             = "5s"
      }
      memory_limiter = {
        check_interval         = "1s"
        limit_percentage       = 65
        spike_limit_percentage = 20
      }
      # Cloud Run's service, revision, region and instance become the
      # monitored resource's labels.
      resourcedetection = {
        detectors = ["env", "gcp"]
        timeout   = "2s"
        override  = false
      }
      # Metric attributes that would collide with the prometheus_target
      # resource's labels are renamed exported_*.
      "transform/collision" = {
        metric_statements = [{
          context = "datapoint"
          statements = flatten([
            for l in ["location", "cluster", "namespace", "job", "instance", "project_id"] : [
              "set(attributes[\"exported_${l}\"], attributes[\"${l}\"])",
              "delete_key(attributes, \"${l}\")",
            ]
          ])
        }]
      }
    }
    exporters = {
      googlemanagedprometheus = {}
    }
    extensions = {
      health_check = { endpoint = "0.0.0.0:${local.health_port}" }
    }
    service = {
      extensions = ["health_check"]
      pipelines = {
        metrics = {
          receivers  = ["otlp"]
          processors = ["resourcedetection", "transform/collision", "memory_limiter", "batch"]
          exporters  = ["googlemanagedprometheus"]
        }
      }
    }
  }

  collector = {
    name        = "otel-collector"
    image       = var.collector_image
    args        = ["--config=${local.config_dir}/${local.config_file}"]
    cpu         = var.collector_cpu
    memory      = var.collector_memory
    volume      = "otel-collector-config"
    config_dir  = local.config_dir
    config_file = local.config_file
    health_port = local.health_port
    health_path = local.health_path
    otlp_port   = local.otlp_http_port
  }

  # --- alert policies ---------------------------------------------------------
  # one_of("a", "b"): a Cloud Monitoring filter matching any of the names.
  one_of = {
    dead_letter = "one_of(${join(", ", [for s in var.dead_letter_subscriptions : jsonencode(s)])})"
    push        = "one_of(${join(", ", [for s in var.push_subscriptions : jsonencode(s)])})"
  }

  # bridge.replication.lag as Managed Service for Prometheus names it
  # (metrics.json).
  lag_p99_query = "histogram_quantile(0.99, sum by (le) (rate(bridge_replication_lag_seconds_bucket[5m])))"

  alert_policies = {
    dead_letter_backlog = {
      display_name = "${var.name}: dead-lettered messages"
      severity     = "ERROR"
      documentation = join("\n", [
        "A message reached a dead-letter subscription of ${var.name}: the service refused it (400) or it failed max_delivery_attempts times.",
        "Pull it to read why (its CloudPubSubDeadLetterSourceSubscription attribute names where it came from), fix the cause, then republish it to its topic.",
      ])
      threshold = {
        filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = ${local.one_of.dead_letter} AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = "0s"
        aligner         = "ALIGN_MAX"
        period          = "60s"
      }
      promql = null
    }
    oldest_unacked = {
      display_name = "${var.name}: push delivery stuck for 15 minutes"
      severity     = "WARNING"
      documentation = join("\n", [
        "The oldest unacknowledged message of a push subscription of ${var.name} is older than 15 minutes: the service keeps answering non-2xx (see its logs) or cannot keep up.",
      ])
      threshold = {
        filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = ${local.one_of.push} AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
        comparison      = "COMPARISON_GT"
        threshold_value = 900
        duration        = "60s"
        aligner         = "ALIGN_MAX"
        period          = "60s"
      }
      promql = null
    }
    replication_lag_p99 = {
      display_name = "${var.name}: p99 replication lag above ${var.replication_lag_p99_seconds} s"
      severity     = "WARNING"
      documentation = join("\n", [
        "The 99th percentile of ${var.name}'s replication lag (bridge.replication.lag: seconds from a Cloud Storage object's update to its replica's commit) stayed above ${var.replication_lag_p99_seconds} s for 5 minutes.",
        "Look for a growing backlog on the push subscriptions, STS or S3 errors in the logs, or instances at max_instances.",
      ])
      threshold = null
      promql = {
        query               = "${local.lag_p99_query} > ${var.replication_lag_p99_seconds}"
        duration            = "300s"
        evaluation_interval = "60s"
      }
    }
  }

  dashboard_json = templatefile("${path.module}/dashboard.json.tftpl", {
    display_name          = "${var.name}"
    lag_threshold_seconds = var.replication_lag_p99_seconds
    backlog_filter        = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = one_of(${join(", ", [for s in concat(var.push_subscriptions, var.dead_letter_subscriptions) : jsonencode(s)])}) AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
  })
}
