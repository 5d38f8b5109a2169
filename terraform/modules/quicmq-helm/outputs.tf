output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.this.name
}

output "namespace" {
  description = "Namespace of the release."
  value       = helm_release.this.namespace
}

output "release_status" {
  description = "Status of the Helm release (deployed, failed, ...)."
  value       = helm_release.this.status
}

output "chart_version" {
  description = "Version of the deployed chart."
  value       = helm_release.this.metadata[0].version
}

output "app_version" {
  description = "quicmq version (the chart's appVersion) that was deployed."
  value       = helm_release.this.metadata[0].app_version
}

output "quic_service_name" {
  description = "UDP LoadBalancer Service of the routers (MQTT over QUIC, port 14567); its status holds the public address."
  value       = local.fullname
}

output "mqtt_service_name" {
  description = "TCP LoadBalancer Service of the nodes (MQTT 1883, MQTT over TLS 8883)."
  value       = "${local.fullname}-mqtt"
}

output "node_headless_service" {
  description = "Headless Service of the nodes (gRPC 7000, admin 8080): pod N is <fullname>-node-N.<this>.<namespace>.svc."
  value       = "${local.fullname}-node-headless"
}

output "cluster_tls_secret_names" {
  description = "Secrets with the node and router certificates for gRPC mTLS ({node, router}; the chart's generated <fullname>-cluster-node-tls and -router-tls when neither Secrets nor an issuer were given); null with cluster_tls_plaintext."
  value       = local.cluster_tls_secret_names
}

output "cluster_keys_secret_name" {
  description = "Secret holding the cluster keys (the chart's generated <release>-keys when none was given)."
  value       = local.keys_secret_name != "" ? local.keys_secret_name : "${local.fullname}-keys"
}
