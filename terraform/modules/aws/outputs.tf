output "role_arn" {
  description = "ARN of the role; the service's AWS_ROLE_ARN."
  value       = aws_iam_role.bridge.arn
}

output "role_name" {
  description = "Name of the role."
  value       = aws_iam_role.bridge.name
}

output "role_max_session_duration" {
  description = "Maximum session duration of the role in seconds: the service's AWS_ROLE_DURATION_SECONDS, at least IAM's 3600."
  value       = aws_iam_role.bridge.max_session_duration
}

output "role_duration_seconds" {
  description = "Value for the service's AWS_ROLE_DURATION_SECONDS."
  value       = var.role_duration_seconds
}

output "bucket_name" {
  description = "Name of the bucket; the service's S3_BUCKET."
  value       = var.create_bucket ? aws_s3_bucket.this[0].id : var.bucket_name
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = var.create_bucket ? aws_s3_bucket.this[0].arn : local.bucket_arn
}

output "bucket_region" {
  description = "Region of the created bucket (null when the bucket was not created here); the service's AWS_REGION should match it."
  value       = var.create_bucket ? aws_s3_bucket.this[0].region : null
}

output "s3_prefix" {
  description = "Key prefix the role is confined to; the service's S3_PREFIX."
  value       = var.s3_prefix
}

output "target_audience" {
  description = "Audience the trust policy expects in the Google ID token; the service's TARGET_AUDIENCE."
  value       = var.target_audience
}

output "google_service_account_unique_id" {
  description = "Unique id of the Google service account the trust policy admits."
  value       = var.google_service_account_unique_id
}

output "trust_policy_json" {
  description = "The role's trust policy document, as JSON."
  value       = data.aws_iam_policy_document.trust.json
}

output "access_policy_json" {
  description = "The role's inline S3 access policy document, as JSON."
  value       = data.aws_iam_policy_document.access.json
}
