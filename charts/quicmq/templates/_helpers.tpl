{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "quicmq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release fullname. Kept short (40 characters) because suffixes such as
`-node-headless` and the pod ordinal are appended to it.
*/}}
{{- define "quicmq.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "quicmq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "quicmq.labels" -}}
helm.sh/chart: {{ include "quicmq.chart" . }}
{{ include "quicmq.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: quicmq
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "quicmq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "quicmq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Names of the parts. */}}
{{- define "quicmq.node.name" -}}{{ include "quicmq.fullname" . }}-node{{- end }}
{{- define "quicmq.node.headless" -}}{{ include "quicmq.fullname" . }}-node-headless{{- end }}
{{- define "quicmq.router.name" -}}{{ include "quicmq.fullname" . }}-router{{- end }}
{{- define "quicmq.config.name" -}}{{ include "quicmq.fullname" . }}-config{{- end }}

{{- define "quicmq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "quicmq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "quicmq.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* Secret holding reset-key, token-key and (optionally) quic-lb-key. */}}
{{/* The Secret holding the admin API token (key `admin-token`). */}}
{{- define "quicmq.adminTokenSecret" -}}
{{- default (printf "%s-admin-token" (include "quicmq.fullname" .)) .Values.adminApi.tokenSecret }}
{{- end }}

{{- define "quicmq.keysSecret" -}}
{{- default (printf "%s-keys" (include "quicmq.fullname" .)) .Values.clusterKeys.existingSecret }}
{{- end }}

{{/* TLS Secret name, empty when nodes use their development certificate. */}}
{{- define "quicmq.tlsSecret" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "quicmq.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Where the cluster's gRPC mTLS material comes from: "plaintext" (none),
"existing" (the caller's Secrets), "certManager" or "generated" (the chart's
own CA).
*/}}
{{- define "quicmq.clusterTls.mode" -}}
{{- $t := .Values.cluster.tls }}
{{- if $t.plaintext }}plaintext
{{- else if or $t.existingSecret.node $t.existingSecret.router }}existing
{{- else if $t.certManager.enabled }}certManager
{{- else }}generated
{{- end }}
{{- end }}

{{/* Secret with a member's cluster certificate; the argument is (list $ "node"|"router"). */}}
{{- define "quicmq.clusterTls.secret" -}}
{{- $root := index . 0 -}}
{{- $role := index . 1 -}}
{{- $mode := include "quicmq.clusterTls.mode" $root -}}
{{- if eq $mode "existing" }}
{{- index $root.Values.cluster.tls.existingSecret $role }}
{{- else if eq $mode "certManager" }}
{{- printf "%s-cluster-%s-cert" (include "quicmq.fullname" $root) $role }}
{{- else if eq $mode "generated" }}
{{- printf "%s-cluster-%s-tls" (include "quicmq.fullname" $root) $role }}
{{- end }}
{{- end }}

{{/*
Cluster mTLS of one container, (list $ "node"|"router"): its environment
variables ("env"), volume mount ("mount") or volume ("volume").
*/}}
{{- define "quicmq.clusterTls.env" -}}
{{- $root := index . 0 -}}
{{- if eq (include "quicmq.clusterTls.mode" $root) "plaintext" }}
# No TLS on gRPC: the network (a service mesh) secures it.
- name: QUICMQ_CLUSTER_PLAINTEXT
  value: "true"
{{- else }}
# Mutual TLS on gRPC: the CAs peers must chain to, and this member's
# certificate and key.
- name: QUICMQ_CLUSTER_CA
  value: /etc/quicmq/cluster-tls/ca.crt
- name: QUICMQ_CLUSTER_CERT
  value: /etc/quicmq/cluster-tls/tls.crt
- name: QUICMQ_CLUSTER_KEY
  value: /etc/quicmq/cluster-tls/tls.key
{{- end }}
{{- end }}

{{- define "quicmq.clusterTls.mount" -}}
{{- $root := index . 0 -}}
{{- if ne (include "quicmq.clusterTls.mode" $root) "plaintext" }}
- name: cluster-tls
  mountPath: /etc/quicmq/cluster-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "quicmq.clusterTls.volume" -}}
{{- $root := index . 0 -}}
{{- $role := index . 1 -}}
{{- if ne (include "quicmq.clusterTls.mode" $root) "plaintext" }}
{{- $bundle := $root.Values.cluster.tls.caBundle }}
# One directory from two sources: the certificate Secret, and the CA
# bundle from the ConfigMap while cluster.tls.caBundle is set.
- name: cluster-tls
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "quicmq.clusterTls.secret" (list $root $role) }}
          items:
            - key: tls.crt
              path: tls.crt
            - key: tls.key
              path: tls.key
            {{- if not $bundle }}
            - key: ca.crt
              path: ca.crt
            {{- end }}
      {{- if $bundle }}
      - configMap:
          name: {{ include "quicmq.config.name" $root }}
          items:
            - key: cluster-ca.crt
              path: ca.crt
      {{- end }}
{{- end }}
{{- end }}

{{- define "quicmq.clusterId" -}}
{{- default (printf "%s-%s" .Release.Namespace (include "quicmq.fullname" .)) .Values.cluster.id }}
{{- end }}

{{/* Stable DNS name of node pod N: <fullname>-node-N.<headless>.<ns>.svc.<domain> */}}
{{- define "quicmq.node.podHost" -}}
{{- $root := index . 0 -}}
{{- $ordinal := index . 1 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "quicmq.node.name" $root) (int $ordinal) (include "quicmq.node.headless" $root) $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end }}

{{/* QUICMQ_JOIN: the first pod's gRPC address first, then (optionally) every other node's. */}}
{{- define "quicmq.join" -}}
{{- $root := . -}}
{{- $grpc := int .Values.node.ports.grpc -}}
{{- $start := int .Values.node.startOrdinal -}}
{{- $count := 1 -}}
{{- if .Values.cluster.joinAllPeers }}{{ $count = int .Values.node.replicas }}{{ end -}}
{{- $addrs := list -}}
{{- range $i := until $count -}}
{{- $addrs = append $addrs (printf "%s:%d" (include "quicmq.node.podHost" (list $root (add $start $i))) $grpc) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end }}

{{/* QUICMQ_SEEDS for routers: every node's gRPC address. */}}
{{- define "quicmq.seeds" -}}
{{- $root := . -}}
{{- $grpc := int .Values.node.ports.grpc -}}
{{- $start := int .Values.node.startOrdinal -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.node.replicas) -}}
{{- $addrs = append $addrs (printf "%s:%d" (include "quicmq.node.podHost" (list $root (add $start $i))) $grpc) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end }}

{{/*
Render a flat map as TOML `key = value` lines, keys sorted. Strings are
JSON-quoted (a valid TOML basic string); numbers are printed as integers
(Helm reads YAML numbers as float64, which would print 4294967295 as
4.294967295e+09); booleans as true/false. Null values are left out.
*/}}
{{- define "quicmq.toml" -}}
{{- range $k := keys . | sortAlpha }}
{{- $v := index $ $k }}
{{- if kindIs "invalid" $v }}
{{- else if kindIs "string" $v }}
{{ $k }} = {{ $v | toJson }}
{{- else if kindIs "bool" $v }}
{{ $k }} = {{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) }}
{{ $k }} = {{ $v | int64 }}
{{- else }}
{{- fail (printf "TOML key %s: only strings, integers and booleans are supported" $k) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Zone spread and host anti-affinity for one component. */}}
{{- define "quicmq.scheduling" -}}
{{- $root := index . 0 -}}
{{- $v := index . 1 -}}
{{- $component := index . 2 -}}
{{- $isDaemonSet := and (eq $component "router") (eq $root.Values.router.kind "DaemonSet") -}}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.affinity }}
affinity:
  {{- toYaml $v.affinity | nindent 2 }}
{{- else if and (not $isDaemonSet) (eq $v.podAntiAffinity "soft") }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "quicmq.selectorLabels" $root | nindent 14 }}
              app.kubernetes.io/component: {{ $component }}
{{- else if and (not $isDaemonSet) (eq $v.podAntiAffinity "hard") }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "quicmq.selectorLabels" $root | nindent 12 }}
            app.kubernetes.io/component: {{ $component }}
{{- end }}
{{- if and $v.topologySpread.enabled (not $isDaemonSet) }}
topologySpreadConstraints:
  - maxSkew: {{ $v.topologySpread.maxSkew | int }}
    topologyKey: {{ $v.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ ternary "DoNotSchedule" "ScheduleAnyway" $v.topologySpread.hard }}
    labelSelector:
      matchLabels:
        {{- include "quicmq.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ $component }}
{{- end }}
{{- end }}

{{/* Checks on combinations the schema cannot express. */}}
{{- define "quicmq.validate" -}}
{{- if and .Values.tls.existingSecret .Values.tls.certManager.enabled }}
{{- fail "tls.existingSecret and tls.certManager.enabled are mutually exclusive" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name" }}
{{- end }}
{{- $ct := .Values.cluster.tls }}
{{- if and $ct.plaintext (or $ct.existingSecret.node $ct.existingSecret.router $ct.certManager.enabled $ct.caBundle) }}
{{- fail "cluster.tls.plaintext excludes cluster.tls.existingSecret, cluster.tls.certManager and cluster.tls.caBundle" }}
{{- end }}
{{- if and (or $ct.existingSecret.node $ct.existingSecret.router) $ct.certManager.enabled }}
{{- fail "cluster.tls.existingSecret and cluster.tls.certManager.enabled are mutually exclusive" }}
{{- end }}
{{- if and $ct.existingSecret.router (not $ct.existingSecret.node) }}
{{- fail "cluster.tls.existingSecret.router needs cluster.tls.existingSecret.node (the nodes' certificate)" }}
{{- end }}
{{- if and $ct.existingSecret.node .Values.router.enabled (not $ct.existingSecret.router) }}
{{- fail "cluster.tls.existingSecret.node needs cluster.tls.existingSecret.router while routers run (router.enabled)" }}
{{- end }}
{{- if and $ct.certManager.enabled (not $ct.certManager.issuerRef.name) }}
{{- fail "cluster.tls.certManager.enabled needs cluster.tls.certManager.issuerRef.name" }}
{{- end }}
{{- end }}
