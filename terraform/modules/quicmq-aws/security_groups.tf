# Nodes and routers each have a security group. Cluster-internal ports
# (gRPC 7000, routed UDP 14568, the routers' internal UDP 14569, admin HTTP
# 8080/8090) accept only the cluster's own security groups, plus the load
# balancer subnets for health checks and admin_cidrs for scrapers. Client
# ports accept allowed_client_cidrs.

resource "aws_security_group" "node" {
  name_prefix = "${var.name}-node-"
  description = "quicmq ${var.name} broker nodes"
  vpc_id      = var.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.name}-node" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "router" {
  name_prefix = "${var.name}-router-"
  description = "quicmq ${var.name} routers"
  vpc_id      = var.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.name}-router" })

  lifecycle {
    create_before_destroy = true
  }
}

# ---------------------------------------------------------------- nodes

resource "aws_vpc_security_group_ingress_rule" "node_grpc_from_nodes" {
  security_group_id            = aws_security_group.node.id
  description                  = "gRPC (Raft, forwarding) between nodes"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.grpc
  to_port                      = local.ports.grpc
  referenced_security_group_id = aws_security_group.node.id
}

resource "aws_vpc_security_group_ingress_rule" "node_grpc_from_routers" {
  security_group_id            = aws_security_group.node.id
  description                  = "gRPC cluster watch from routers"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.grpc
  to_port                      = local.ports.grpc
  referenced_security_group_id = aws_security_group.router.id
}

resource "aws_vpc_security_group_ingress_rule" "node_routed_from_routers" {
  security_group_id            = aws_security_group.node.id
  description                  = "QUIC datagrams in PROXY v2 envelopes from routers"
  ip_protocol                  = "udp"
  from_port                    = local.ports.routed
  to_port                      = local.ports.routed
  referenced_security_group_id = aws_security_group.router.id
}

resource "aws_vpc_security_group_ingress_rule" "node_admin_from_nodes" {
  security_group_id            = aws_security_group.node.id
  description                  = "admin HTTP from nodes (quicmq cluster status)"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.admin
  to_port                      = local.ports.admin
  referenced_security_group_id = aws_security_group.node.id
}

resource "aws_vpc_security_group_ingress_rule" "node_admin_from_lb" {
  for_each          = toset(concat(local.lb_health_cidrs, var.admin_cidrs))
  security_group_id = aws_security_group.node.id
  description       = "admin HTTP: load balancer health checks and scrapers"
  ip_protocol       = "tcp"
  from_port         = local.ports.admin
  to_port           = local.ports.admin
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "node_mqtt" {
  for_each          = toset(var.allowed_client_cidrs)
  security_group_id = aws_security_group.node.id
  description       = "MQTT over TCP from clients (through the load balancer)"
  ip_protocol       = "tcp"
  from_port         = local.ports.mqtt
  to_port           = local.ports.mqtt
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "node_mqtts" {
  for_each          = toset(var.allowed_client_cidrs)
  security_group_id = aws_security_group.node.id
  description       = "MQTT over TLS from clients (through the load balancer)"
  ip_protocol       = "tcp"
  from_port         = local.ports.mqtts
  to_port           = local.ports.mqtts
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "node_all" {
  security_group_id = aws_security_group.node.id
  description       = "peers, routers, AWS APIs, release download"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# ---------------------------------------------------------------- routers

resource "aws_vpc_security_group_ingress_rule" "router_quic" {
  for_each          = toset(var.allowed_client_cidrs)
  security_group_id = aws_security_group.router.id
  description       = "MQTT over QUIC from clients (through the load balancer)"
  ip_protocol       = "udp"
  from_port         = local.ports.quic
  to_port           = local.ports.quic
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "router_internal_from_nodes" {
  security_group_id            = aws_security_group.router.id
  description                  = "datagrams from nodes back to the routers' internal socket"
  ip_protocol                  = "udp"
  from_port                    = local.ports.router
  to_port                      = local.ports.router
  referenced_security_group_id = aws_security_group.node.id
}

resource "aws_vpc_security_group_ingress_rule" "router_admin_from_nodes" {
  security_group_id            = aws_security_group.router.id
  description                  = "router admin HTTP from the cluster"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.radmin
  to_port                      = local.ports.radmin
  referenced_security_group_id = aws_security_group.node.id
}

resource "aws_vpc_security_group_ingress_rule" "router_admin_from_lb" {
  for_each          = toset(concat(local.lb_health_cidrs, var.admin_cidrs))
  security_group_id = aws_security_group.router.id
  description       = "router admin HTTP: load balancer health checks and scrapers"
  ip_protocol       = "tcp"
  from_port         = local.ports.radmin
  to_port           = local.ports.radmin
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "router_all" {
  security_group_id = aws_security_group.router.id
  description       = "clients, nodes, AWS APIs, release download"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}
