variable "region" {
  description = "AWS region of the cluster."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name of the deployment (resource prefix and cluster ID)."
  type        = string
  default     = "quicmq"
}

variable "vpc_id" {
  description = "Existing VPC to deploy into."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for the instances, one per availability zone (with a NAT or VPC endpoints for the AWS APIs and the release download)."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Public subnets for the internet-facing Network Load Balancer."
  type        = list(string)
}

variable "binaries_source" {
  description = "https:// URL or s3://bucket/key of the quicmq release archive (quicmq-node, quicmq-router, quicmq)."
  type        = string
}

variable "binaries_sha256" {
  description = "SHA-256 of the release archive; null skips the check."
  type        = string
  default     = null
}

variable "cluster_keys_secret_arn" {
  description = "Secrets Manager secret (or SSM SecureString parameter) ARN with JSON {reset_key, token_key, quic_lb_key}."
  type        = string
}

variable "cluster_tls_node_secret_arn" {
  description = "Secrets Manager secret (or SSM SecureString parameter) ARN with JSON {ca, cert, key} in PEM: the node certificate (quicmq ca issue DIR --name node --usage node) for mTLS on the cluster's gRPC."
  type        = string
}

variable "cluster_tls_router_secret_arn" {
  description = "Secrets Manager secret (or SSM SecureString parameter) ARN with JSON {ca, cert, key} in PEM: the router certificate (quicmq ca issue DIR --name router --usage router)."
  type        = string
}

variable "admin_token_secret_arn" {
  description = "Secrets Manager secret (or SSM SecureString parameter) ARN whose text is the nodes' admin API bearer token (quicmq token new FILE)."
  type        = string
}

variable "tls_secret_arn" {
  description = "Secrets Manager secret (or SSM parameter) ARN with JSON {cert, key} in PEM; null uses development certificates."
  type        = string
  default     = null
}

variable "allowed_client_cidrs" {
  description = "CIDRs allowed to connect as MQTT clients."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}
