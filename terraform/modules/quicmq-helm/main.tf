# Deploys charts/quicmq into an existing Kubernetes cluster. The helm and
# kubernetes providers are configured by the caller.

locals {
  # The chart's fullname: the release name when it contains "quicmq",
  # otherwise "<release>-quicmq" (at most 40 characters).
  fullname = trimsuffix(substr(
    length(regexall("quicmq", var.release_name)) > 0 ? var.release_name : "${var.release_name}-quicmq", 0, 40
  ), "-")

  chart_path = var.chart_path != null ? var.chart_path : "${path.module}/../../../charts/quicmq"

  # Which Secret holds the cluster keys: the caller's, the one this module
  # creates from var.cluster_keys, or "" (the chart generates one).
  # nonsensitive: whether keys were given is no secret, and count needs it.
  create_keys_secret = var.cluster_keys_secret_name == null && nonsensitive(var.cluster_keys != null)
  keys_secret_name = (
    var.cluster_keys_secret_name != null ? var.cluster_keys_secret_name :
    local.create_keys_secret ? "${var.release_name}-cluster-keys" : ""
  )

  # The Secrets nodes and routers mount for gRPC mTLS, as the chart names
  # them: the caller's, else cert-manager's (-cert) or the chart's
  # generated ones (-tls).
  cluster_tls_suffix = var.cluster_tls_cert_manager_issuer != null ? "cert" : "tls"
  cluster_tls_secret_names = var.cluster_tls_plaintext ? null : {
    node   = coalesce(var.cluster_tls_node_secret_name, "${local.fullname}-cluster-node-${local.cluster_tls_suffix}")
    router = coalesce(var.cluster_tls_router_secret_name, "${local.fullname}-cluster-router-${local.cluster_tls_suffix}")
  }

  values = {
    image = { for k, v in { repository = var.image_repository, tag = var.image_tag } : k => v if v != null }
    cluster = {
      id           = var.cluster_id != null ? var.cluster_id : ""
      voters       = var.voters
      joinAllPeers = var.join_all_peers
      # The chart refuses contradictory combinations (plaintext with
      # certificates, existing Secrets with cert-manager).
      tls = {
        plaintext = var.cluster_tls_plaintext
        existingSecret = {
          node   = var.cluster_tls_node_secret_name != null ? var.cluster_tls_node_secret_name : ""
          router = var.cluster_tls_router_secret_name != null ? var.cluster_tls_router_secret_name : ""
        }
        certManager = {
          enabled = var.cluster_tls_cert_manager_issuer != null
          issuerRef = {
            name = var.cluster_tls_cert_manager_issuer != null ? var.cluster_tls_cert_manager_issuer.name : ""
            kind = var.cluster_tls_cert_manager_issuer != null ? var.cluster_tls_cert_manager_issuer.kind : "Issuer"
          }
        }
        caBundle = var.cluster_ca_bundle != null ? var.cluster_ca_bundle : ""
      }
    }
    clusterKeys = {
      existingSecret = local.keys_secret_name
    }
    adminApi = {
      tokenSecret = var.admin_token_secret_name != null ? var.admin_token_secret_name : ""
    }
    tls = {
      existingSecret = var.tls_secret_name != null ? var.tls_secret_name : ""
      certManager = {
        enabled = var.cert_manager_issuer != null && var.tls_secret_name == null
        issuerRef = {
          name = var.cert_manager_issuer != null ? var.cert_manager_issuer.name : ""
          kind = var.cert_manager_issuer != null ? var.cert_manager_issuer.kind : "ClusterIssuer"
        }
        dnsNames = var.dns_names
      }
    }
    node = merge(
      {
        replicas = var.node_replicas
        config   = { log = var.log_filter }
        persistence = {
          enabled      = true
          size         = var.storage_size
          storageClass = var.storage_class != null ? var.storage_class : ""
        }
        topologySpread = {
          enabled     = true
          topologyKey = "topology.kubernetes.io/zone"
          maxSkew     = 1
          hard        = var.zone_spread_hard
        }
      },
      { for k, v in { resources = var.node_resources } : k => v if v != null },
    )
    router = merge(
      {
        enabled  = true
        kind     = var.router_kind
        replicas = var.router_replicas
        config   = { log = var.log_filter }
      },
      { for k, v in { resources = var.router_resources } : k => v if v != null },
    )
    service = {
      quic = {
        type                     = "LoadBalancer"
        annotations              = var.quic_service_annotations
        loadBalancerSourceRanges = var.load_balancer_source_ranges
      }
      mqtt = {
        enabled                  = true
        type                     = "LoadBalancer"
        annotations              = var.mqtt_service_annotations
        loadBalancerSourceRanges = var.load_balancer_source_ranges
      }
    }
    metrics = {
      serviceMonitor = {
        enabled = var.service_monitor_enabled
        labels  = var.service_monitor_labels
      }
      dashboard = {
        enabled = var.dashboard_enabled
      }
    }
  }
}

resource "kubernetes_namespace_v1" "this" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "quicmq"
    }
  }
}

# Only when the caller passes the keys themselves (they then sit in the
# Terraform state); cluster_keys_secret_name avoids that.
resource "kubernetes_secret_v1" "cluster_keys" {
  count = local.create_keys_secret ? 1 : 0

  metadata {
    name      = local.keys_secret_name
    namespace = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "quicmq"
    }
  }

  type = "Opaque"
  data = {
    for k, v in {
      "reset-key"   = var.cluster_keys.reset_key
      "token-key"   = var.cluster_keys.token_key
      "quic-lb-key" = var.cluster_keys.quic_lb_key
    } : k => v if v != null
  }

  depends_on = [kubernetes_namespace_v1.this]
}

resource "helm_release" "this" {
  name             = var.release_name
  namespace        = var.namespace
  create_namespace = false
  chart            = local.chart_path
  values           = concat([yamlencode(local.values)], var.extra_values)
  wait             = var.wait
  timeout          = var.timeout_seconds
  atomic           = var.atomic
  max_history      = 10

  depends_on = [
    kubernetes_namespace_v1.this,
    kubernetes_secret_v1.cluster_keys,
  ]
}
