# ---------------------------------------------------------------- release

variable "release_name" {
  description = "Helm release name; prefixes every resource (StatefulSet <release>-node, Service <release>, ...)."
  type        = string
  default     = "quicmq"
}

variable "namespace" {
  description = "Kubernetes namespace of the release."
  type        = string
  default     = "quicmq"
}

variable "create_namespace" {
  description = "Create the namespace (with the kubernetes provider, before any Secret the module creates)."
  type        = bool
  default     = true
}

variable "chart_path" {
  description = "Path or URL of the quicmq chart. Null means this repository's charts/quicmq."
  type        = string
  default     = null
}

variable "wait" {
  description = "Wait until every node and router is ready before the apply succeeds."
  type        = bool
  default     = true
}

variable "timeout_seconds" {
  description = "How long Helm waits for the release to become ready, seconds."
  type        = number
  default     = 600
}

variable "atomic" {
  description = "Roll the release back if an install or upgrade fails."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- image and shape

variable "image_repository" {
  description = "Container image repository (the image holds quicmq-node and quicmq-router)."
  type        = string
  default     = "quicmq"
}

variable "image_tag" {
  description = "Container image tag. Null means the chart's appVersion."
  type        = string
  default     = null
}

variable "cluster_id" {
  description = "Cluster ID nodes check on join. Null means <namespace>-<release>."
  type        = string
  default     = null
}

variable "node_replicas" {
  description = "Number of broker nodes (StatefulSet replicas)."
  type        = number
  default     = 3
}

variable "voters" {
  description = "Raft voters: 3 or 5."
  type        = number
  default     = 3

  validation {
    condition     = contains([3, 5], var.voters)
    error_message = "voters must be 3 or 5."
  }
}

variable "join_all_peers" {
  description = "Give every node all nodes' gRPC addresses to join (the first pod's first), not the first pod's alone."
  type        = bool
  default     = false
}

variable "router_kind" {
  description = "Router workload: Deployment or DaemonSet."
  type        = string
  default     = "Deployment"

  validation {
    condition     = contains(["Deployment", "DaemonSet"], var.router_kind)
    error_message = "router_kind must be Deployment or DaemonSet."
  }
}

variable "router_replicas" {
  description = "Number of routers when router_kind is Deployment."
  type        = number
  default     = 2
}

variable "node_resources" {
  description = "Kubernetes resources (requests/limits maps) of a node container. Null keeps the chart's defaults."
  type = object({
    requests = map(string)
    limits   = map(string)
  })
  default = null
}

variable "router_resources" {
  description = "Kubernetes resources (requests/limits maps) of a router container. Null keeps the chart's defaults."
  type = object({
    requests = map(string)
    limits   = map(string)
  })
  default = null
}

variable "storage_class" {
  description = "StorageClass of the nodes' data volumes. Null uses the cluster default."
  type        = string
  default     = null
}

variable "storage_size" {
  description = "Size of each node's data volume."
  type        = string
  default     = "10Gi"
}

variable "zone_spread_hard" {
  description = "Refuse to schedule rather than put nodes unevenly across zones (DoNotSchedule instead of ScheduleAnyway)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- services

variable "quic_service_annotations" {
  description = "Annotations of the UDP LoadBalancer Service in front of the routers (cloud load balancer settings)."
  type        = map(string)
  default     = {}
}

variable "mqtt_service_annotations" {
  description = "Annotations of the TCP LoadBalancer Service (1883/8883) in front of the nodes."
  type        = map(string)
  default     = {}
}

variable "load_balancer_source_ranges" {
  description = "CIDRs allowed to reach both load balancers. Empty allows all."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------- secrets

variable "cluster_keys_secret_name" {
  description = "Name of an existing Secret in the namespace with reset-key, token-key (64 hex digits) and optionally quic-lb-key (32 hex digits). Recommended: no key passes through Terraform."
  type        = string
  default     = null
}

variable "cluster_keys" {
  description = "Cluster keys (hex) for a Secret the module creates when cluster_keys_secret_name is null. They are stored in Terraform state: prefer cluster_keys_secret_name. Null with no secret name: the chart generates random keys."
  type = object({
    reset_key   = string
    token_key   = string
    quic_lb_key = optional(string)
  })
  default   = null
  sensitive = true
}

variable "admin_token_secret_name" {
  description = "Name of an existing Secret in the namespace with the nodes' admin API bearer token under admin-token (quicmq token new FILE); chart value adminApi.tokenSecret. Null: the chart generates <release>-admin-token."
  type        = string
  default     = null
}

variable "cluster_tls_node_secret_name" {
  description = "Name of an existing Secret in the namespace with ca.crt, tls.crt and tls.key: the node certificate (DNS name quicmq-node, serverAuth + clientAuth) for mTLS on the cluster's gRPC (chart value cluster.tls.existingSecret.node). Set with cluster_tls_router_secret_name. Null: cert-manager (cluster_tls_cert_manager_issuer) or a CA the chart generates."
  type        = string
  default     = null
}

variable "cluster_tls_router_secret_name" {
  description = "Name of an existing Secret in the namespace with ca.crt, tls.crt and tls.key: the router certificate (DNS name quicmq-router, clientAuth) (chart value cluster.tls.existingSecret.router)."
  type        = string
  default     = null
}

variable "cluster_tls_cert_manager_issuer" {
  description = "cert-manager issuer of a private CA (it must write ca.crt) that issues the node and router certificates for gRPC mTLS (chart values cluster.tls.certManager.*). Null: no cluster Certificates. Not together with the cluster_tls_*_secret_name inputs."
  type = object({
    name = string
    kind = optional(string, "Issuer")
  })
  default = null
}

variable "cluster_ca_bundle" {
  description = "PEM of every CA nodes and routers trust on gRPC, in place of the ca.crt of their Secrets (chart value cluster.tls.caBundle): old and new CA while the cluster CA is rotated. Null: each Secret's ca.crt."
  type        = string
  default     = null
}

variable "cluster_tls_plaintext" {
  description = "gRPC between nodes and routers without TLS (chart value cluster.tls.plaintext), only for a service mesh that does mTLS between the pods itself. Not together with the other cluster TLS inputs."
  type        = bool
  default     = false
}

variable "tls_secret_name" {
  description = "Name of an existing kubernetes.io/tls Secret for the QUIC and TLS listeners. Null: cert-manager (if cert_manager_issuer is set) or a self-signed development certificate."
  type        = string
  default     = null
}

variable "cert_manager_issuer" {
  description = "cert-manager issuer that issues the listener certificate for dns_names. Null: no Certificate."
  type = object({
    name = string
    kind = optional(string, "ClusterIssuer")
  })
  default = null
}

variable "dns_names" {
  description = "Public DNS names clients use, put in the cert-manager Certificate."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------- observability

variable "service_monitor_enabled" {
  description = "Create Prometheus Operator ServiceMonitors (needs the monitoring.coreos.com CRDs)."
  type        = bool
  default     = false
}

variable "service_monitor_labels" {
  description = "Labels on the ServiceMonitors, e.g. { release = \"prometheus\" }."
  type        = map(string)
  default     = {}
}

variable "dashboard_enabled" {
  description = "Ship the Grafana dashboard ConfigMap (label grafana_dashboard: \"1\")."
  type        = bool
  default     = true
}

variable "log_filter" {
  description = "Log filter of nodes and routers."
  type        = string
  default     = "info"
}

variable "extra_values" {
  description = "Further values documents (YAML), applied after the module's own."
  type        = list(string)
  default     = []
}
