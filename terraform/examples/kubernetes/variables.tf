variable "kubeconfig_path" {
  description = "kubeconfig of the existing cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "kubeconfig context to use; null means the current one."
  type        = string
  default     = null
}

variable "namespace" {
  description = "Namespace to deploy into."
  type        = string
  default     = "quicmq"
}

variable "image_repository" {
  description = "Repository of the quicmq container image."
  type        = string
  default     = "quicmq"
}

variable "cluster_keys_secret_name" {
  description = "Existing Secret (in the namespace) with reset-key, token-key, quic-lb-key; null lets the chart generate the keys."
  type        = string
  default     = null
}
