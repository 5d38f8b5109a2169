output "lb_dns_name" {
  description = "DNS name of the Network Load Balancer (MQTT over QUIC on UDP 14567, MQTT over TCP 1883 and TLS 8883)."
  value       = aws_lb.this.dns_name
}

output "lb_zone_id" {
  description = "Route 53 zone ID of the load balancer, for an alias record of your own."
  value       = aws_lb.this.zone_id
}

output "lb_arn" {
  description = "ARN of the Network Load Balancer."
  value       = aws_lb.this.arn
}

output "quic_endpoint" {
  description = "host:port for MQTT over QUIC clients (quicmq pub/sub -h HOST -p PORT)."
  value       = "${aws_lb.this.dns_name}:${local.ports.quic}"
}

output "mqtt_endpoint" {
  description = "host:port for MQTT over TCP clients."
  value       = "${aws_lb.this.dns_name}:${local.ports.mqtt}"
}

output "mqtts_endpoint" {
  description = "host:port for MQTT over TLS clients."
  value       = "${aws_lb.this.dns_name}:${local.ports.mqtts}"
}

output "node_hosts" {
  description = "Private DNS names of the node slots (node-<i>.<zone>), in node ID order."
  value       = local.node_hosts
}

output "node_grpc_addresses" {
  description = "gRPC addresses (Raft, cluster watch, admin) of the node slots: the routers' seeds."
  value       = local.node_grpc
}

output "private_zone_id" {
  description = "Route 53 private hosted zone holding the node records."
  value       = local.zone_id
}

output "node_security_group_id" {
  description = "Security group of the nodes."
  value       = aws_security_group.node.id
}

output "router_security_group_id" {
  description = "Security group of the routers."
  value       = aws_security_group.router.id
}

output "node_autoscaling_group_names" {
  description = "Autoscaling group of each node slot, in node ID order (roll changes one at a time)."
  value       = aws_autoscaling_group.node[*].name
}

output "router_autoscaling_group_name" {
  description = "Autoscaling group of the routers."
  value       = aws_autoscaling_group.router.name
}

output "node_data_volume_ids" {
  description = "EBS data volume of each node slot, in node ID order."
  value       = aws_ebs_volume.node_data[*].id
}

output "node_role_arn" {
  description = "IAM role of the node instances."
  value       = aws_iam_role.node.arn
}

output "router_role_arn" {
  description = "IAM role of the router instances."
  value       = aws_iam_role.router.arn
}
