# One Network Load Balancer: UDP 14567 to the routers (MQTT over QUIC) and
# TCP 1883/8883 straight to the nodes (MQTT over TCP/TLS; TLS ends on the
# node). Instance targets keep the client's source address, which routers
# pass on to nodes in the PROXY v2 header. Health checks use the admin
# endpoints /health/ready.

resource "aws_lb" "this" {
  # Accepted checkov findings (listed in terraform/README.md):
  #checkov:skip=CKV_AWS_91:NLB access logs cover TLS listeners only; this NLB has TCP and UDP listeners (TLS ends on the nodes), so there is nothing to log
  #checkov:skip=CKV_AWS_150:deletion protection is opt-in (lb_deletion_protection) so that terraform destroy of a test or example stack works

  name                             = "${var.name}-nlb"
  load_balancer_type               = "network"
  internal                         = var.lb_internal
  subnets                          = local.lb_subnet_ids
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.lb_deletion_protection
  tags                             = local.common_tags
}

resource "aws_lb_target_group" "quic" {
  name                   = "${var.name}-quic"
  port                   = local.ports.quic
  protocol               = "UDP"
  target_type            = "instance"
  vpc_id                 = var.vpc_id
  deregistration_delay   = 30
  connection_termination = true
  tags                   = local.common_tags

  health_check {
    protocol            = "HTTP"
    port                = tostring(local.ports.radmin)
    path                = "/health/ready"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_target_group" "mqtt" {
  name                 = "${var.name}-mqtt"
  port                 = local.ports.mqtt
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = 60
  tags                 = local.common_tags

  health_check {
    protocol            = "HTTP"
    port                = tostring(local.ports.admin)
    path                = "/health/ready"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_target_group" "mqtts" {
  name                 = "${var.name}-mqtts"
  port                 = local.ports.mqtts
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = 60
  tags                 = local.common_tags

  health_check {
    protocol            = "HTTP"
    port                = tostring(local.ports.admin)
    path                = "/health/ready"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "quic" {
  load_balancer_arn = aws_lb.this.arn
  port              = local.ports.quic
  protocol          = "UDP"
  tags              = local.common_tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.quic.arn
  }
}

resource "aws_lb_listener" "mqtt" {
  load_balancer_arn = aws_lb.this.arn
  port              = local.ports.mqtt
  protocol          = "TCP"
  tags              = local.common_tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.mqtt.arn
  }
}

resource "aws_lb_listener" "mqtts" {
  load_balancer_arn = aws_lb.this.arn
  port              = local.ports.mqtts
  protocol          = "TCP"
  tags              = local.common_tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.mqtts.arn
  }
}
