# Launch templates, autoscaling groups and node data volumes.

locals {
  user_data_common = templatefile("${path.module}/templates/common.sh.tftpl", local.template_common)

  node_user_data = templatefile("${path.module}/templates/node-user-data.sh.tftpl", {
    common       = local.user_data_common
    cluster_id   = var.name
    voters       = var.voters
    join         = local.join
    zone_id      = local.zone_id
    zone_name    = local.zone_name
    tls_arn      = var.tls_secret_arn != null ? var.tls_secret_arn : ""
    passwd_arn   = var.password_file_secret_arn != null ? var.password_file_secret_arn : ""
    cluster_tls  = var.cluster_tls_node_secret_arn
    admin_token  = var.admin_token_secret_arn
    anonymous    = var.allow_anonymous
    extra_config = var.node_extra_config
    port_quic    = local.ports.quic
    port_routed  = local.ports.routed
    port_mqtt    = local.ports.mqtt
    port_mqtts   = local.ports.mqtts
    port_grpc    = local.ports.grpc
    port_admin   = local.ports.admin
  })

  router_user_data = templatefile("${path.module}/templates/router-user-data.sh.tftpl", {
    common      = local.user_data_common
    seeds       = local.seeds
    cluster_tls = var.cluster_tls_router_secret_arn
    port_quic   = local.ports.quic
    port_router = local.ports.router
    port_radmin = local.ports.radmin
  })
}

# ---------------------------------------------------------------- node data volumes

resource "aws_ebs_volume" "node_data" {
  count             = var.node_count
  availability_zone = local.node_az[count.index]
  size              = var.node_volume_size_gb
  type              = var.node_volume_type
  encrypted         = true
  kms_key_id        = var.kms_key_arn

  tags = merge(local.common_tags, {
    Name          = "${var.name}-node-${local.slots[count.index]}-data"
    "quicmq:slot" = tostring(local.slots[count.index])
    "quicmq:role" = "node-data"
  })
}

# ---------------------------------------------------------------- launch templates

resource "aws_launch_template" "node" {
  name_prefix   = "${var.name}-node-"
  description   = "quicmq ${var.name} broker node"
  image_id      = local.ami_id
  instance_type = var.node_instance_type
  key_name      = var.key_name
  # gzip: cloud-init unpacks it, and the script stays under EC2's 16 KiB.
  user_data              = base64gzip(local.node_user_data)
  vpc_security_group_ids = [aws_security_group.node.id]
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.node.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    # Tags are read with ec2:DescribeTags, not IMDS: IMDS tags would refuse
    # tag keys with '/' (common in var.tags).
    instance_metadata_tags = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = 20
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.common_tags, { Name = "${var.name}-node-root" })
  }

  tags = local.common_tags
}

resource "aws_launch_template" "router" {
  name_prefix            = "${var.name}-router-"
  description            = "quicmq ${var.name} router"
  image_id               = local.ami_id
  instance_type          = var.router_instance_type
  key_name               = var.key_name
  user_data              = base64gzip(local.router_user_data)
  vpc_security_group_ids = [aws_security_group.router.id]
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.router.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = 10
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tags = local.common_tags
}

# ---------------------------------------------------------------- autoscaling groups

# One group of exactly one instance per node slot: a replaced instance comes
# back in the same subnet, takes the slot's data volume and DNS name, and
# rejoins as the same node. Health is EC2 status only, so a node that waits
# for a Raft quorum is not killed by a load balancer check. Launch template
# changes reach a slot on its next replacement; roll them one slot at a time
# (aws autoscaling start-instance-refresh --auto-scaling-group-name <slot>).
resource "aws_autoscaling_group" "node" {
  count                     = var.node_count
  name_prefix               = "${var.name}-node-${local.slots[count.index]}-"
  min_size                  = 1
  max_size                  = 1
  desired_capacity          = 1
  vpc_zone_identifier       = [local.node_subnet[count.index]]
  health_check_type         = "EC2"
  health_check_grace_period = 300
  default_instance_warmup   = 120
  target_group_arns         = [aws_lb_target_group.mqtt.arn, aws_lb_target_group.mqtts.arn]
  termination_policies      = ["OldestInstance"]

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-node-${local.slots[count.index]}"
    propagate_at_launch = true
  }

  tag {
    key                 = "quicmq:slot"
    value               = tostring(local.slots[count.index])
    propagate_at_launch = true
  }

  tag {
    key                 = "quicmq:role"
    value               = "node"
    propagate_at_launch = true
  }

  dynamic "tag" {
    for_each = local.common_tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  depends_on = [aws_ebs_volume.node_data]
}

resource "aws_autoscaling_group" "router" {
  name_prefix               = "${var.name}-router-"
  min_size                  = var.router_count
  max_size                  = var.router_count * 2
  desired_capacity          = var.router_count
  vpc_zone_identifier       = var.subnet_ids
  health_check_type         = "ELB"
  health_check_grace_period = 120
  default_instance_warmup   = 60
  target_group_arns         = [aws_lb_target_group.quic.arn]

  launch_template {
    id      = aws_launch_template.router.id
    version = aws_launch_template.router.latest_version
  }

  # Routers are stateless: replace them in rolling batches on any change.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-router"
    propagate_at_launch = true
  }

  tag {
    key                 = "quicmq:role"
    value               = "router"
    propagate_at_launch = true
  }

  dynamic "tag" {
    for_each = local.common_tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}
