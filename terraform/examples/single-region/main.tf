# One quicmq cluster in one AWS region: 3 nodes (3 Raft voters) in three
# availability zones, 2 routers, one Network Load Balancer.
#
#   aws secretsmanager create-secret --name quicmq/cluster-keys --secret-string \
#     "{\"reset_key\":\"$(openssl rand -hex 32)\",\"token_key\":\"$(openssl rand -hex 32)\",\"quic_lb_key\":\"$(openssl rand -hex 16)\"}"
#   # the node and router certificates for gRPC mTLS: see README.md
#   terraform init && terraform apply -var vpc_id=... (see terraform.tfvars.example)

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      project = "quicmq"
    }
  }
}

module "quicmq" {
  source = "../../modules/quicmq-aws"

  name                    = var.name
  vpc_id                  = var.vpc_id
  subnet_ids              = var.private_subnet_ids
  lb_subnet_ids           = var.public_subnet_ids
  allowed_client_cidrs    = var.allowed_client_cidrs
  binaries_source         = var.binaries_source
  binaries_sha256         = var.binaries_sha256
  cluster_keys_secret_arn = var.cluster_keys_secret_arn
  tls_secret_arn          = var.tls_secret_arn

  # Mutual TLS on gRPC: nodes read the node certificate, routers the router
  # certificate, both issued by a CA whose key stays outside AWS.
  cluster_tls_node_secret_arn   = var.cluster_tls_node_secret_arn
  cluster_tls_router_secret_arn = var.cluster_tls_router_secret_arn
  # The admin API's bearer token (quicmq token new FILE).
  admin_token_secret_arn = var.admin_token_secret_arn

  node_count   = 3
  voters       = 3
  router_count = 2

  tags = {
    environment = "example"
  }
}
