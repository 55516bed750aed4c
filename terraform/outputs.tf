output "service_url" {
  description = "URL of the Cloud Run service."
  value       = module.gcp.service_url
}

output "service_account_email" {
  description = "Email of the service's runtime service account."
  value       = module.gcp.service_account_email
}

output "service_account_unique_id" {
  description = "Numeric unique id of the runtime service account, matched by the role's trust policy."
  value       = module.gcp.service_account_unique_id
}

output "pubsub_topic" {
  description = "Outside commands topic, pushed to /pubsub; grant outside publishers roles/pubsub.publisher on it."
  value       = module.gcp.pubsub_topic
}

output "tasks_topic" {
  description = "The service's own tasks topic (TASKS_TOPIC), pushed to /tasks; only the runtime account publishes to it."
  value       = module.gcp.tasks_topic
}

output "dead_letter_subscription" {
  description = "Pull subscription holding dead-lettered messages."
  value       = module.gcp.dead_letter_subscription
}

output "gcs_event_types" {
  description = "Cloud Storage event types of the source bucket delivered to the service."
  value       = module.gcp.gcs_event_types
}

output "gcs_events_subscription" {
  description = "Push subscription (with dead-letter policy) that delivers the source bucket's notifications, if notifications are used."
  value       = module.gcp.gcs_events_subscription
}

output "eventarc_triggers" {
  description = "Eventarc triggers on the source bucket by event type, if gcs_event_delivery = \"eventarc\"."
  value       = module.gcp.eventarc_triggers
}

output "aws_role_arn" {
  description = "ARN of the AWS role the service assumes."
  value       = module.aws.role_arn
}

output "s3_bucket" {
  description = "S3 bucket the service works in."
  value       = module.aws.bucket_name
}

output "s3_prefix" {
  description = "Key prefix the service is confined to."
  value       = module.aws.s3_prefix
}

output "alert_policies" {
  description = "Alert policies by key (dead_letter_backlog, oldest_unacked, replication_lag_p99)."
  value       = module.gcp.alert_policies
}

output "dashboard_id" {
  description = "Id of the Cloud Monitoring dashboard."
  value       = module.gcp.dashboard_id
}
