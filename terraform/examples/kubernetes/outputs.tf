output "quic_service" {
  description = "kubectl -n <namespace> get service <this>: the routers' UDP load balancer (MQTT over QUIC, port 14567)."
  value       = "${module.quicmq.namespace}/${module.quicmq.quic_service_name}"
}

output "mqtt_service" {
  description = "The nodes' TCP load balancer (MQTT 1883, TLS 8883)."
  value       = "${module.quicmq.namespace}/${module.quicmq.mqtt_service_name}"
}

output "release_status" {
  description = "Status of the Helm release."
  value       = module.quicmq.release_status
}
