# quicmq in an existing Kubernetes cluster through the Helm chart.
#
#   kubectl create namespace quicmq
#   kubectl -n quicmq create secret generic quicmq-cluster-keys \
#     --from-literal=reset-key=$(openssl rand -hex 32) \
#     --from-literal=token-key=$(openssl rand -hex 32) \
#     --from-literal=quic-lb-key=$(openssl rand -hex 16)
#   terraform apply -var cluster_keys_secret_name=quicmq-cluster-keys

provider "kubernetes" {
  config_path    = var.kubeconfig_path
  config_context = var.kube_context
}

provider "helm" {
  kubernetes {
    config_path    = var.kubeconfig_path
    config_context = var.kube_context
  }
}

module "quicmq" {
  source = "../../modules/quicmq-helm"

  namespace = var.namespace
  # A namespace made beforehand (it holds the keys Secret) is not created again.
  create_namespace         = var.cluster_keys_secret_name == null
  image_repository         = var.image_repository
  cluster_keys_secret_name = var.cluster_keys_secret_name
  node_replicas            = 3
  voters                   = 3
  router_kind              = "Deployment"
  router_replicas          = 2
}
