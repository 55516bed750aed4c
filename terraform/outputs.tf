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
  description = "Topic that carries commands to the service."
  value       = module.gcp.pubsub_topic
}

output "dead_letter_subscription" {
  description = "Pull subscription holding dead-lettered messages."
  value       = module.gcp.dead_letter_subscription
}

output "eventarc_trigger" {
  description = "Eventarc trigger on the Cloud Storage bucket, if any."
  value       = module.gcp.eventarc_trigger
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
