# Both halves of gcp-aws-bridge. The Google module creates the service account,
# whose unique id the AWS module writes into the role's trust policy; the AWS
# module's role ARN goes back into the service's environment. Terraform orders
# these at resource level, so the two module calls do not form a cycle.

module "gcp" {
  source = "./modules/gcp"

  project_id                = var.project_id
  region                    = var.region
  name                      = var.name
  image                     = var.image
  aws_role_arn              = module.aws.role_arn
  aws_region                = var.aws_region
  aws_role_duration_seconds = var.role_duration_seconds
  s3_bucket                 = module.aws.bucket_name
  s3_prefix                 = var.s3_prefix
  target_audience           = var.target_audience
  auth_mode                 = var.auth_mode
  additional_invokers       = var.additional_invokers
  gcs_source_bucket         = var.gcs_source_bucket
  gcs_event_delivery        = var.gcs_event_delivery
  command_ops               = var.command_ops
  sync_delete               = var.sync_delete
  min_instances             = var.min_instances
  max_instances             = var.max_instances
  concurrency               = var.concurrency
  request_timeout_seconds   = var.request_timeout_seconds
  use_http2                 = var.use_http2
  labels                    = var.labels

  metrics                     = var.metrics
  metric_export_interval_ms   = var.metric_export_interval_ms
  replication_lag_p99_seconds = var.replication_lag_p99_seconds
  alert_notification_channels = var.alert_notification_channels
}

module "aws" {
  source = "./modules/aws"

  bucket_name                      = var.s3_bucket
  create_bucket                    = var.create_bucket
  s3_prefix                        = var.s3_prefix
  google_service_account_unique_id = module.gcp.service_account_unique_id
  target_audience                  = var.target_audience
  role_name                        = var.aws_role_name
  role_duration_seconds            = var.role_duration_seconds
  allow_list_all_buckets           = var.allow_list_all_buckets
}
