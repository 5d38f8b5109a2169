variable "name" {
  description = "Name prefix of both regional deployments (each gets -<region> appended as its cluster ID)."
  type        = string
  default     = "quicmq"
}

variable "primary" {
  description = "The first region's cluster: region, existing VPC and subnets, cluster keys, cluster TLS (node and router certificate) and admin token secrets, in that region."
  type = object({
    region                        = string
    vpc_id                        = string
    private_subnet_ids            = list(string)
    public_subnet_ids             = list(string)
    cluster_keys_secret_arn       = string
    cluster_tls_node_secret_arn   = string
    cluster_tls_router_secret_arn = string
    admin_token_secret_arn        = string
    tls_secret_arn                = optional(string)
    node_count                    = optional(number, 3)
    router_count                  = optional(number, 2)
  })
}

variable "secondary" {
  description = "The second region's cluster, same shape as primary."
  type = object({
    region                        = string
    vpc_id                        = string
    private_subnet_ids            = list(string)
    public_subnet_ids             = list(string)
    cluster_keys_secret_arn       = string
    cluster_tls_node_secret_arn   = string
    cluster_tls_router_secret_arn = string
    admin_token_secret_arn        = string
    tls_secret_arn                = optional(string)
    node_count                    = optional(number, 3)
    router_count                  = optional(number, 2)
  })
}

variable "binaries_source" {
  description = "https:// URL of the quicmq release archive, readable from both regions (for s3:// use a bucket per region or a multi-region access point)."
  type        = string
}

variable "binaries_sha256" {
  description = "SHA-256 of the release archive; null skips the check."
  type        = string
  default     = null
}

variable "public_zone_id" {
  description = "Route 53 public hosted zone for one latency-routed name over both regions. Null: no record."
  type        = string
  default     = null
}

variable "record_name" {
  description = "Record in public_zone_id (e.g. mqtt.example.com) that answers with the nearest region's load balancer."
  type        = string
  default     = null
}
