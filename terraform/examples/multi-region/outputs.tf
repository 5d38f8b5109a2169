output "endpoints" {
  description = "Per region: MQTT over QUIC (UDP), TCP and TLS endpoints of its load balancer."
  value = {
    (var.primary.region) = {
      quic  = module.primary.quic_endpoint
      mqtt  = module.primary.mqtt_endpoint
      mqtts = module.primary.mqtts_endpoint
    }
    (var.secondary.region) = {
      quic  = module.secondary.quic_endpoint
      mqtt  = module.secondary.mqtt_endpoint
      mqtts = module.secondary.mqtts_endpoint
    }
  }
}

output "global_name" {
  description = "Latency-routed name over both regions (null without public_zone_id/record_name); clients use it with ports 14567, 1883, 8883."
  value       = local.latency_record ? var.record_name : null
}

output "node_hosts" {
  description = "Private node DNS names per region."
  value = {
    (var.primary.region)   = module.primary.node_hosts
    (var.secondary.region) = module.secondary.node_hosts
  }
}
