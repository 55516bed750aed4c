output "service_url" {
  description = "Deterministic URL of the service: the audience of push and Eventarc tokens."
  value       = local.service_url
}

output "env" {
  description = "The container's environment; empty values (e.g. S3_PREFIX for the whole bucket) are left out."
  value       = { for k, v in local.env : k => v if v != "" }
}

output "invoker_members" {
  description = "Members given roles/run.invoker on the service."
  value       = local.invoker_members
}

output "custom_audiences" {
  description = "Cloud Run custom audiences: tokens for these are accepted by Cloud Run besides the service URL."
  value       = var.additional_auth_audiences
}

output "push_audience" {
  description = "aud of the Pub/Sub push subscription's OIDC token."
  value       = local.push_audience
}

output "push_endpoint" {
  description = "The push subscription's endpoint."
  value       = local.push_endpoint
}

output "runtime_account_id" {
  description = "account_id of the service's runtime service account."
  value       = local.runtime_account_id
}

output "push_account_id" {
  description = "account_id of the Pub/Sub push service account."
  value       = local.push_account_id
}

output "push_service_account_email" {
  description = "Email of the Pub/Sub push service account (the push token's email)."
  value       = local.push_email
}

output "events_account_id" {
  description = "account_id of the Eventarc trigger's service account."
  value       = local.events_account_id
}

output "eventarc_service_account_email" {
  description = "Email of the Eventarc trigger's service account; null without Eventarc."
  value       = local.events_email
}

output "container_port_name" {
  description = "Name of the container port: h2c for HTTP/2 end to end, else http1."
  value       = var.use_http2 ? "h2c" : "http1"
}
