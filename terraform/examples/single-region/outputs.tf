output "quic_endpoint" {
  description = "MQTT over QUIC: quicmq sub -h HOST -p 14567 -t 'sensors/#' --insecure."
  value       = module.quicmq.quic_endpoint
}

output "mqtt_endpoint" {
  description = "MQTT over TCP: quicmq pub -h HOST -p 1883 --transport tcp ..."
  value       = module.quicmq.mqtt_endpoint
}

output "mqtts_endpoint" {
  description = "MQTT over TLS: quicmq pub -h HOST -p 8883 --transport tls ..."
  value       = module.quicmq.mqtts_endpoint
}

output "node_hosts" {
  description = "Private DNS names of the nodes (admin: quicmq cluster status --admin node-1.<zone>:8080 from inside the VPC)."
  value       = module.quicmq.node_hosts
}
