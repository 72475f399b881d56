{{/*
Expand the name of the chart.
*/}}
{{- define "revoked.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name, truncated at 63 characters (DNS names).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "revoked.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version as used by the chart label.
*/}}
{{- define "revoked.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "revoked.selectorLabels" -}}
app.kubernetes.io/name: {{ include "revoked.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "revoked.labels" -}}
helm.sh/chart: {{ include "revoked.chart" . }}
{{ include "revoked.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: revoked
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of the ServiceAccount of the ingest API and the example.
*/}}
{{- define "revoked.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "revoked.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image holding revoked and revokectl.
*/}}
{{- define "revoked.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The ConfigMap holding the public key that snapshots are checked with: the chart's own
(from snapshot.publicKey.pem) or an existing one.
*/}}
{{- define "revoked.snapshotPublicKeyConfigMap" -}}
{{- if .Values.snapshot.publicKey.configMap.name }}
{{- .Values.snapshot.publicKey.configMap.name }}
{{- else }}
{{- printf "%s-snapshot-public-key" (include "revoked.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The --nats-* flags shared by the sidecar, the ingest API and revokectl. Argument: a dict
with "root" (the chart's context) and "creds" (a {name, key} Secret reference or empty).
*/}}
{{- define "revoked.natsArgs" -}}
{{- $nats := .root.Values.nats }}
- --nats-url={{ $nats.url }}
{{- if .creds.name }}
- --nats-creds=/etc/revoked/nats/creds/{{ .creds.key }}
{{- end }}
{{- if $nats.tls.secretName }}
- --nats-tls-ca=/etc/revoked/nats/tls/{{ $nats.tls.caKey }}
{{- if $nats.tls.clientCert }}
- --nats-tls-cert=/etc/revoked/nats/tls/tls.crt
- --nats-tls-key=/etc/revoked/nats/tls/tls.key
{{- end }}
{{- end }}
- --stream={{ $nats.stream }}
- --subject-prefix={{ $nats.subjectPrefix }}
{{- end }}

{{/*
Volume mounts for the NATS credentials and TLS files. Same argument as revoked.natsArgs.
*/}}
{{- define "revoked.natsVolumeMounts" -}}
{{- if .creds.name }}
- name: revoked-nats-creds
  mountPath: /etc/revoked/nats/creds
  readOnly: true
{{- end }}
{{- if .root.Values.nats.tls.secretName }}
- name: revoked-nats-tls
  mountPath: /etc/revoked/nats/tls
  readOnly: true
{{- end }}
{{- end }}

{{/*
Volumes for the NATS credentials and TLS files. Same argument as revoked.natsArgs.
*/}}
{{- define "revoked.natsVolumes" -}}
{{- if .creds.name }}
- name: revoked-nats-creds
  secret:
    secretName: {{ .creds.name }}
    items:
      - key: {{ .creds.key }}
        path: {{ .creds.key }}
{{- end }}
{{- if .root.Values.nats.tls.secretName }}
- name: revoked-nats-tls
  secret:
    secretName: {{ .root.Values.nats.tls.secretName }}
{{- end }}
{{- end }}

{{/*
The gRPC address revoked listens on (--grpc-addr) and Envoy calls.
*/}}
{{- define "revoked.grpcAddr" -}}
{{- if eq .Values.sidecar.transport "unix" }}
{{- printf "unix://%s" .Values.sidecar.socketPath }}
{{- else }}
{{- printf "127.0.0.1:%d" (int .Values.sidecar.ports.grpc) }}
{{- end }}
{{- end }}

{{/*
revoked.sidecar renders the revoked sidecar container (one list item) for a workload's
pod. Call it with the revoked chart's context:

  containers:            # initContainers: when sidecar.native is true
    {{- include "revoked.sidecar" . | nindent 4 }}         # in this chart
    {{- include "revoked.sidecar" .Subcharts.revoked | nindent 4 }}   # from a parent chart

and add its volumes with revoked.sidecarVolumes. Envoy then calls
127.0.0.1:<sidecar.ports.grpc> (or the Unix socket, mounting revoked.socketVolumeMount).
*/}}
{{- define "revoked.sidecar" -}}
{{- include "revoked.sidecarContainer" (dict "root" . "native" .Values.sidecar.native "test" false) }}
{{- end }}

{{/*
revoked.sidecarContainer is revoked.sidecar with its options: "root" (the chart's
context), "native" (restartPolicy: Always) and "test" (the helm test pod: gRPC and HTTP on
the pod IP so the kubelet's gRPC probe reaches grpc.health.v1, startup gated by it).
*/}}
{{- define "revoked.sidecarContainer" -}}
{{- $root := .root }}
{{- $v := $root.Values.sidecar }}
{{- $creds := $root.Values.nats.credentialsSecret }}
{{- if and $v.jwks.url $v.jwks.configMap.name }}
{{- fail "revoked: sidecar.jwks.url and sidecar.jwks.configMap.name exclude each other" }}
{{- end }}
{{- $pk := $root.Values.snapshot.publicKey }}
{{- if and $root.Values.snapshot.enabled (not $pk.pem) (not $pk.configMap.name) }}
{{- fail "revoked: snapshot.enabled needs snapshot.publicKey.pem or snapshot.publicKey.configMap.name: the sidecars load only snapshots signed by the snapshot job's key" }}
{{- end }}
{{- if and $pk.pem $pk.configMap.name }}
{{- fail "revoked: snapshot.publicKey.pem and snapshot.publicKey.configMap.name exclude each other" }}
{{- end -}}
- name: revoked
  image: {{ include "revoked.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args:
    {{- if .test }}
    - --grpc-addr=0.0.0.0:{{ $v.ports.grpc }}
    - --http-addr=0.0.0.0:{{ $v.ports.http | default 9192 }}
    {{- else }}
    - --grpc-addr={{ include "revoked.grpcAddr" $root }}
    - --http-addr={{ if $v.ports.http }}127.0.0.1:{{ $v.ports.http }}{{ end }}
    {{- end }}
    # 0.0.0.0, not loopback: the kubelet probes /readyz and Prometheus scrapes /metrics
    # from outside the pod. The admin port serves no check and no secret.
    - --admin-addr=0.0.0.0:{{ $v.ports.admin }}
    {{- include "revoked.natsArgs" (dict "root" $root "creds" $creds) | trim | nindent 4 }}
    {{- if $v.jwks.url }}
    - --jwks-url={{ $v.jwks.url }}
    {{- else if $v.jwks.configMap.name }}
    - --jwks-file=/etc/revoked/jwks/{{ $v.jwks.configMap.key }}
    {{- end }}
    {{- range $v.issuers }}
    - --issuer={{ . }}
    {{- end }}
    {{- range $v.audiences }}
    - --audience={{ . }}
    {{- end }}
    - --max-token-lifetime={{ $v.maxTokenLifetime }}
    - --max-staleness={{ $v.maxStaleness }}
    - --stale-policy={{ $v.stalePolicy }}
    - --log-level={{ $v.logLevel }}
    {{- if $root.Values.snapshot.enabled }}
    - --snapshot-bucket={{ $root.Values.snapshot.bucket }}
    - --snapshot-public-key=/etc/revoked/snapshot-public-key/{{ $root.Values.snapshot.publicKey.configMap.key }}
    {{- end }}
    {{- with $v.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if or $v.gc.percent $v.gc.memoryLimit $v.env }}
  env:
    {{- with $v.gc.percent }}
    - name: GOGC
      value: {{ . | quote }}
    {{- end }}
    {{- with $v.gc.memoryLimit }}
    - name: GOMEMLIMIT
      value: {{ . | quote }}
    {{- end }}
    {{- with $v.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  ports:
    {{- if or .test (ne $v.transport "unix") }}
    - name: revoked-grpc
      containerPort: {{ $v.ports.grpc }}
      protocol: TCP
    {{- end }}
    {{- if or .test $v.ports.http }}
    - name: revoked-http
      containerPort: {{ $v.ports.http | default 9192 }}
      protocol: TCP
    {{- end }}
    - name: revoked-admin
      containerPort: {{ $v.ports.admin }}
      protocol: TCP
  startupProbe:
    {{- if .test }}
    grpc:
      port: {{ $v.ports.grpc }}
      service: envoy.service.auth.v3.Authorization
    {{- else }}
    httpGet:
      path: /readyz
      port: revoked-admin
    {{- end }}
    periodSeconds: 2
    failureThreshold: {{ div $v.startupSeconds 2 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: revoked-admin
    periodSeconds: 5
    failureThreshold: 2
  livenessProbe:
    httpGet:
      path: /healthz
      port: revoked-admin
    periodSeconds: 10
    failureThreshold: 3
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  {{- with include "revoked.sidecarVolumeMounts" . | trim }}
  volumeMounts:
    {{- . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Volume mounts of the revoked container; same argument as revoked.sidecarContainer.
*/}}
{{- define "revoked.sidecarVolumeMounts" -}}
{{- $root := .root }}
{{- $v := $root.Values.sidecar }}
{{- include "revoked.natsVolumeMounts" (dict "root" $root "creds" $root.Values.nats.credentialsSecret) }}
{{- if $v.jwks.configMap.name }}
- name: revoked-jwks
  mountPath: /etc/revoked/jwks
  readOnly: true
{{- end }}
{{- if $root.Values.snapshot.enabled }}
- name: revoked-snapshot-public-key
  mountPath: /etc/revoked/snapshot-public-key
  readOnly: true
{{- end }}
{{- if and (eq $v.transport "unix") (not .test) }}
{{ include "revoked.socketVolumeMount" $root }}
{{- end }}
{{- end }}

{{/*
revoked.socketVolumeMount mounts the directory of the Unix socket (sidecar.transport=unix)
in a container: revoked's and Envoy's.
*/}}
{{- define "revoked.socketVolumeMount" -}}
- name: revoked-socket
  mountPath: {{ dir .Values.sidecar.socketPath }}
{{- end }}

{{/*
revoked.sidecarVolumes renders the volumes (list items) revoked.sidecar mounts. Call it
with the same context.
*/}}
{{- define "revoked.sidecarVolumes" -}}
{{- include "revoked.sidecarVolumeList" . | trim }}
{{- end }}

{{- define "revoked.sidecarVolumeList" -}}
{{- $v := .Values.sidecar }}
{{- include "revoked.natsVolumes" (dict "root" . "creds" .Values.nats.credentialsSecret) }}
{{- if $v.jwks.configMap.name }}
- name: revoked-jwks
  configMap:
    name: {{ $v.jwks.configMap.name }}
{{- end }}
{{- if .Values.snapshot.enabled }}
- name: revoked-snapshot-public-key
  configMap:
    name: {{ include "revoked.snapshotPublicKeyConfigMap" . }}
    items:
      - key: {{ .Values.snapshot.publicKey.configMap.key }}
        path: {{ .Values.snapshot.publicKey.configMap.key }}
{{- end }}
{{- if eq $v.transport "unix" }}
- name: revoked-socket
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- end }}

{{/*
Security context of the example's app and Envoy containers.
*/}}
{{- define "revoked.exampleSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{/*
Volume mounts of the ingest container: NATS files, the bearer token, TLS, the client CA.
*/}}
{{- define "revoked.ingestVolumeMounts" -}}
{{- $i := .Values.ingest }}
{{- include "revoked.natsVolumeMounts" (dict "root" . "creds" .Values.nats.credentialsSecret) }}
{{- if $i.auth.bearerTokenSecret.name }}
- name: bearer-token
  mountPath: /etc/revoked/ingest/bearer
  readOnly: true
{{- end }}
{{- if $i.tls.secretName }}
- name: tls
  mountPath: /etc/revoked/ingest/tls
  readOnly: true
{{- end }}
{{- if $i.auth.clientCASecret.name }}
- name: client-ca
  mountPath: /etc/revoked/ingest/client-ca
  readOnly: true
{{- end }}
{{- end }}

{{/*
Volumes of the ingest pod, matching revoked.ingestVolumeMounts.
*/}}
{{- define "revoked.ingestVolumes" -}}
{{- $i := .Values.ingest }}
{{- include "revoked.natsVolumes" (dict "root" . "creds" .Values.nats.credentialsSecret) }}
{{- with $i.auth.bearerTokenSecret.name }}
- name: bearer-token
  secret:
    secretName: {{ . }}
{{- end }}
{{- with $i.tls.secretName }}
- name: tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- with $i.auth.clientCASecret.name }}
- name: client-ca
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}

{{/*
Labels of the monitoring resources: the common labels and monitoring.labels (e.g. the
Prometheus Operator's selectors).
*/}}
{{- define "revoked.monitoringLabels" -}}
{{ include "revoked.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
revoked.alertMeta renders an alert's labels (severity, then prometheusRule.alertLabels)
and annotations (summary, description, then prometheusRule.alertAnnotations). Argument:
dict "r" (monitoring.prometheusRule), "severity", "summary", "description".
*/}}
{{- define "revoked.alertMeta" -}}
labels:
  {{- toYaml (merge (dict "severity" .severity) .r.alertLabels) | nindent 2 }}
annotations:
  {{- toYaml (merge (dict "summary" .summary "description" .description) .r.alertAnnotations) | nindent 2 }}
{{- end }}
