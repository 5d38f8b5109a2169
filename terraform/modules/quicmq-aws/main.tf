# quicmq on plain EC2 instances.
#
# Nodes behave like a Kubernetes StatefulSet: node slot i (1, 2, ...; node
# ID 0 means "not set" to quicmq) is an autoscaling group of exactly one
# instance, pinned to one subnet, with
#   - node ID i (read from the instance's quicmq:slot tag),
#   - a data volume that outlives the instance (attached at boot),
#   - a stable name node-<i>.<private zone> (the instance UPSERTs its
#     private IP into the Route 53 private hosted zone at boot).
# Node 1 bootstraps the cluster (its advertise name is the first join
# entry and its data volume holds no cluster state); every other node joins
# through node-1 (and, with join_all_peers, any other node) on gRPC 7000.
# Routers are one autoscaling group behind the Network Load Balancer's UDP
# listener; they watch cluster membership from the nodes' gRPC addresses.

data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_subnet" "instances" {
  count = length(var.subnet_ids)
  id    = var.subnet_ids[count.index]
}

data "aws_subnet" "lb" {
  count = length(local.lb_subnet_ids)
  id    = local.lb_subnet_ids[count.index]
}

data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == null ? 1 : 0
  name  = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}"
}

data "aws_route53_zone" "existing" {
  count   = var.private_zone_id == null ? 0 : 1
  zone_id = var.private_zone_id
}

locals {
  ports = {
    quic   = 14567 # UDP, public MQTT over QUIC (routers; nodes' direct port)
    routed = 14568 # UDP, node: PROXY v2 datagrams from routers
    router = 14569 # UDP, router: internal socket facing the nodes
    mqtt   = 1883  # TCP, node
    mqtts  = 8883  # TCP, node
    grpc   = 7000  # TCP, node: Raft, forwarding, cluster watch, admin
    admin  = 8080  # TCP, node admin HTTP
    radmin = 8090  # TCP, router admin HTTP
  }

  lb_subnet_ids = length(var.lb_subnet_ids) > 0 ? var.lb_subnet_ids : var.subnet_ids
  ami_id        = var.ami_id != null ? var.ami_id : nonsensitive(data.aws_ssm_parameter.al2023[0].value)

  zone_id   = var.private_zone_id != null ? var.private_zone_id : aws_route53_zone.nodes[0].zone_id
  zone_name = trimsuffix(var.private_zone_id != null ? data.aws_route53_zone.existing[0].name : aws_route53_zone.nodes[0].name, ".")

  # Node slots = node IDs: 1, 2, ..., node_count.
  slots      = range(1, var.node_count + 1)
  node_hosts = [for i in local.slots : "node-${i}.${local.zone_name}"]
  node_grpc  = [for h in local.node_hosts : "${h}:${local.ports.grpc}"]
  join       = var.join_all_peers ? join(",", local.node_grpc) : local.node_grpc[0]
  seeds      = join(",", local.node_grpc)

  # Slot i -> subnet (i - 1) mod n, so slots spread over the zones of
  # subnet_ids. Indexed like local.slots.
  node_subnet = [for i in local.slots : var.subnet_ids[(i - 1) % length(var.subnet_ids)]]
  node_az     = [for i in local.slots : data.aws_subnet.instances[(i - 1) % length(var.subnet_ids)].availability_zone]

  lb_health_cidrs = distinct([for s in data.aws_subnet.lb : s.cidr_block])

  binaries_in_s3 = startswith(var.binaries_source, "s3://")
  binaries_s3_arn = local.binaries_in_s3 ? format(
    "arn:%s:s3:::%s", data.aws_partition.current.partition, trimprefix(var.binaries_source, "s3://")
  ) : null

  common_tags = merge(var.tags, {
    "quicmq:cluster" = var.name
  })

  # Everything both user data scripts share.
  template_common = {
    name            = var.name
    region          = data.aws_region.current.name
    binaries_source = var.binaries_source
    binaries_sha256 = var.binaries_sha256 != null ? var.binaries_sha256 : ""
    keys_arn        = var.cluster_keys_secret_arn
    log_filter      = var.log_filter
  }
}

resource "aws_route53_zone" "nodes" {
  count         = var.private_zone_id == null ? 1 : 0
  name          = coalesce(var.private_zone_name, "${var.name}.quicmq.internal")
  comment       = "quicmq ${var.name}: node-<i> records, written by the nodes at boot"
  force_destroy = true # the node records are written by instances, not Terraform

  vpc {
    vpc_id = var.vpc_id
  }

  tags = local.common_tags
}
