# ---------------------------------------------------------------- placement

variable "name" {
  description = "Name of the deployment: prefix of every resource name, the cluster ID nodes check on join, and the tag quicmq:cluster."
  type        = string
  default     = "quicmq"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name must be 3-24 characters of lower-case letters, digits and '-', starting with a letter (it prefixes load balancer and target group names)."
  }
}

variable "vpc_id" {
  description = "ID of the existing VPC to deploy into."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for node and router instances, ideally one per availability zone. Node slot i lives in subnet (i - 1) mod len(subnet_ids), pinned there with its data volume."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "lb_subnet_ids" {
  description = "Subnets of the Network Load Balancer (public subnets for an internet-facing one). Empty means subnet_ids."
  type        = list(string)
  default     = []
}

variable "lb_internal" {
  description = "Make the Network Load Balancer internal instead of internet-facing."
  type        = bool
  default     = false
}

variable "lb_deletion_protection" {
  description = "Turn on deletion protection of the Network Load Balancer (recommended in production; terraform destroy then fails until it is turned off again)."
  type        = bool
  default     = false
}

variable "allowed_client_cidrs" {
  description = "CIDRs that may reach MQTT over QUIC (UDP 14567 on routers) and MQTT over TCP/TLS (1883/8883 on nodes). Instance targets keep the client's source address, so these rules see real client addresses."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "admin_cidrs" {
  description = "Extra CIDRs (e.g. a Prometheus server) allowed to the admin HTTP ports (node 8080, router 8090). The cluster's own security groups and the load balancer subnets (health checks) are always allowed."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- cluster shape

variable "node_count" {
  description = "Number of broker nodes (node slots). Each slot is an autoscaling group of one instance with its own data volume and DNS name; the node ID is the slot number (1, 2, ...; quicmq reserves node ID 0)."
  type        = number
  default     = 3

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 64 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number from 1 to 64."
  }
}

variable "voters" {
  description = "Raft voters (3 or 5). Nodes beyond the voters join as learners."
  type        = number
  default     = 3

  validation {
    condition     = contains([3, 5], var.voters)
    error_message = "voters must be 3 or 5."
  }
}

variable "join_all_peers" {
  description = "Give every node all node gRPC addresses in QUICMQ_JOIN (node 1 first) instead of node 1's alone, so a node can join while node 1 is down."
  type        = bool
  default     = true
}

variable "router_count" {
  description = "Number of router instances (one autoscaling group spread over subnet_ids)."
  type        = number
  default     = 2

  validation {
    condition     = var.router_count >= 1
    error_message = "router_count must be at least 1."
  }
}

# ---------------------------------------------------------------- instances

variable "architecture" {
  description = "CPU architecture of the instances and of the binaries in binaries_source: x86_64 or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "ami_id" {
  description = "AMI for all instances. Null means the latest Amazon Linux 2023 for the architecture (from the public SSM parameter). The user data needs systemd, bash, python3 and the AWS CLI."
  type        = string
  default     = null
}

variable "node_instance_type" {
  description = "Instance type of the nodes."
  type        = string
  default     = "c6i.large"
}

variable "router_instance_type" {
  description = "Instance type of the routers."
  type        = string
  default     = "c6i.large"
}

variable "node_volume_size_gb" {
  description = "Size of each node's data volume (Raft log, sessions, retained messages), GiB. The volume outlives instance replacements."
  type        = number
  default     = 50
}

variable "node_volume_type" {
  description = "EBS type of the node data volumes."
  type        = string
  default     = "gp3"
}

variable "kms_key_arn" {
  description = "KMS key for the EBS volumes and for decrypting the cluster keys, cluster TLS and TLS secrets. Null uses the AWS managed keys."
  type        = string
  default     = null
}

variable "key_name" {
  description = "EC2 key pair for SSH. Null (recommended): no SSH, use SSM Session Manager."
  type        = string
  default     = null
}

# ---------------------------------------------------------------- software

variable "binaries_source" {
  description = "Where instances fetch the quicmq release: an https:// URL or an s3://bucket/key object of a .tar.gz holding quicmq-node, quicmq-router and quicmq (any directory depth) built for var.architecture."
  type        = string

  validation {
    condition     = can(regex("^(https://|s3://[^/]+/.+)", var.binaries_source))
    error_message = "binaries_source must start with https:// or be s3://bucket/key."
  }
}

variable "binaries_sha256" {
  description = "SHA-256 of the release archive; instances refuse a download that does not match. Null skips the check."
  type        = string
  default     = null
}

variable "cluster_keys_secret_arn" {
  description = "ARN of a Secrets Manager secret or an SSM SecureString parameter whose value is JSON {\"reset_key\": 64 hex, \"token_key\": 64 hex, \"quic_lb_key\": 32 hex (optional)}. Read by instances at boot; never passes through Terraform state."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:(secretsmanager|ssm):", var.cluster_keys_secret_arn))
    error_message = "cluster_keys_secret_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "cluster_tls_node_secret_arn" {
  description = "ARN of a Secrets Manager secret or SSM SecureString parameter holding JSON {\"ca\": PEM CA certificate(s), \"cert\": PEM certificate (chain), \"key\": PEM key} for mutual TLS on the cluster's gRPC: the node certificate, DNS name quicmq-node with serverAuth and clientAuth (`quicmq ca issue DIR --name node --usage node`), shared by every node. Several CAs in \"ca\" during a CA rotation. Read by nodes only, before every start."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:(secretsmanager|ssm):", var.cluster_tls_node_secret_arn))
    error_message = "cluster_tls_node_secret_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "admin_token_secret_arn" {
  description = "ARN of a Secrets Manager secret or SSM SecureString parameter whose text is the bearer token of the nodes' admin API (`quicmq token new FILE` writes one). The admin port listens on the instance's network, so every request but /metrics and /health/* must carry `Authorization: Bearer TOKEN` (`quicmq cluster ... --token-file`). Read by nodes only, before every start."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:(secretsmanager|ssm):", var.admin_token_secret_arn))
    error_message = "admin_token_secret_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "cluster_tls_router_secret_arn" {
  description = "ARN of a Secrets Manager secret or SSM SecureString parameter holding JSON {\"ca\", \"cert\", \"key\"} (PEM) like cluster_tls_node_secret_arn, with the router certificate: DNS name quicmq-router, clientAuth (`quicmq ca issue DIR --name router --usage router`), which may watch the cluster but not join it. Read by routers only, before every start."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:(secretsmanager|ssm):", var.cluster_tls_router_secret_arn))
    error_message = "cluster_tls_router_secret_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "tls_secret_arn" {
  description = "ARN of a Secrets Manager secret or SSM SecureString parameter holding JSON {\"cert\": PEM chain, \"key\": PEM key} for the QUIC and TLS listeners. Null: every node generates a self-signed development certificate."
  type        = string
  default     = null

  validation {
    condition     = var.tls_secret_arn == null || can(regex("^arn:[^:]+:(secretsmanager|ssm):", var.tls_secret_arn))
    error_message = "tls_secret_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "password_file_secret_arn" {
  description = "ARN of a Secrets Manager secret or SSM SecureString parameter whose text is a quicmq password file (user:argon2id-hash lines, written by `quicmq passwd`). Null: no password file."
  type        = string
  default     = null

  validation {
    condition     = var.password_file_secret_arn == null || can(regex("^arn:[^:]+:(secretsmanager|ssm):", var.password_file_secret_arn))
    error_message = "password_file_secret_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "allow_anonymous" {
  description = "Let MQTT clients without a user name connect. Off by default: set password_file_secret_arn so clients can log in."
  type        = bool
  default     = false
}

variable "log_filter" {
  description = "Log filter of nodes and routers (tracing EnvFilter syntax)."
  type        = string
  default     = "info"
}

variable "node_extra_config" {
  description = "Raw TOML appended to /etc/quicmq/node.toml (e.g. \"max_queued_messages = 100000\")."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------- discovery

variable "private_zone_name" {
  description = "Name of the Route 53 private hosted zone created for the node records node-<i>.<zone> (associated with the VPC). Null means \"<name>.quicmq.internal\". Ignored when private_zone_id is set."
  type        = string
  default     = null
}

variable "private_zone_id" {
  description = "ID of an existing Route 53 private hosted zone, associated with the VPC, to hold the node records instead of creating a zone."
  type        = string
  default     = null
}
