# Two independent quicmq clusters, one per region, each with its own Raft
# group, nodes, routers and Network Load Balancer. Raft does not span
# regions: a client keeps its MQTT session within its region. An optional
# latency-routed Route 53 name sends each client to the nearest region.

provider "aws" {
  alias  = "primary"
  region = var.primary.region
}

provider "aws" {
  alias  = "secondary"
  region = var.secondary.region
}

module "primary" {
  source = "../../modules/quicmq-aws"
  providers = {
    aws = aws.primary
  }

  name                    = "${var.name}-${var.primary.region}"
  vpc_id                  = var.primary.vpc_id
  subnet_ids              = var.primary.private_subnet_ids
  lb_subnet_ids           = var.primary.public_subnet_ids
  cluster_keys_secret_arn = var.primary.cluster_keys_secret_arn
  # Each region's cluster has its own CA: a certificate of one cannot join
  # the other.
  cluster_tls_node_secret_arn   = var.primary.cluster_tls_node_secret_arn
  cluster_tls_router_secret_arn = var.primary.cluster_tls_router_secret_arn
  admin_token_secret_arn        = var.primary.admin_token_secret_arn
  tls_secret_arn                = var.primary.tls_secret_arn
  node_count                    = var.primary.node_count
  router_count                  = var.primary.router_count
  binaries_source               = var.binaries_source
  binaries_sha256               = var.binaries_sha256

  tags = {
    region-role = "primary"
  }
}

module "secondary" {
  source = "../../modules/quicmq-aws"
  providers = {
    aws = aws.secondary
  }

  name                    = "${var.name}-${var.secondary.region}"
  vpc_id                  = var.secondary.vpc_id
  subnet_ids              = var.secondary.private_subnet_ids
  lb_subnet_ids           = var.secondary.public_subnet_ids
  cluster_keys_secret_arn = var.secondary.cluster_keys_secret_arn
  # Each region's cluster has its own CA: a certificate of one cannot join
  # the other.
  cluster_tls_node_secret_arn   = var.secondary.cluster_tls_node_secret_arn
  cluster_tls_router_secret_arn = var.secondary.cluster_tls_router_secret_arn
  admin_token_secret_arn        = var.secondary.admin_token_secret_arn
  tls_secret_arn                = var.secondary.tls_secret_arn
  node_count                    = var.secondary.node_count
  router_count                  = var.secondary.router_count
  binaries_source               = var.binaries_source
  binaries_sha256               = var.binaries_sha256

  tags = {
    region-role = "secondary"
  }
}

locals {
  latency_record = var.public_zone_id != null && var.record_name != null
  regional = {
    primary = {
      region  = var.primary.region
      dns     = module.primary.lb_dns_name
      zone_id = module.primary.lb_zone_id
    }
    secondary = {
      region  = var.secondary.region
      dns     = module.secondary.lb_dns_name
      zone_id = module.secondary.lb_zone_id
    }
  }
}

resource "aws_route53_record" "latency" {
  for_each = local.latency_record ? local.regional : {}
  provider = aws.primary

  zone_id        = var.public_zone_id
  name           = var.record_name
  type           = "A"
  set_identifier = each.value.region

  latency_routing_policy {
    region = each.value.region
  }

  alias {
    name                   = each.value.dns
    zone_id                = each.value.zone_id
    evaluate_target_health = true
  }
}
