{{/*
The revoked sidecar. An application chart adds it to its pod template with the context of
this library (its alias, "revoked"):

  spec:
    terminationGracePeriodSeconds: {{ include "revoked.terminationGracePeriodSeconds" .Subcharts.revoked }}
    initContainers:   # the native sidecar, where the cluster supports it (sidecar.native)
      {{- include "revoked.initContainers" .Subcharts.revoked | nindent 6 }}
    containers:
      - name: app
      - name: envoy   # volumeMounts: revoked.socketVolumeMount with sidecar.transport=unix
      {{- include "revoked.containers" .Subcharts.revoked | nindent 6 }}
    volumes:
      {{- include "revoked.sidecarVolumes" .Subcharts.revoked | nindent 6 }}

Envoy then calls 127.0.0.1:<sidecar.ports.grpc> (or the Unix socket).
*/}}

{{/* revoked.sidecarNative says "true" when the sidecar renders as a native sidecar. */}}
{{- define "revoked.sidecarNative" -}}
{{- $n := .Values.sidecar.native }}
{{- if eq (toString $n) "auto" }}
{{- if semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version }}true{{ end }}
{{- else if eq (toString $n) "true" }}true
{{- end }}
{{- end }}

{{/* revoked.initContainers: the sidecar when it is native, nothing otherwise. */}}
{{- define "revoked.initContainers" -}}
{{- if include "revoked.sidecarNative" . }}
{{- include "revoked.sidecar" . }}
{{- end }}
{{- end }}

{{/* revoked.containers: the sidecar when it is not native, nothing otherwise. */}}
{{- define "revoked.containers" -}}
{{- if not (include "revoked.sidecarNative" .) }}
{{- include "revoked.sidecar" . }}
{{- end }}
{{- end }}

{{/* revoked.sidecar: the container, one list item, native or not as sidecar.native says. */}}
{{- define "revoked.sidecar" -}}
{{- include "revoked.sidecarContainer" (dict "root" . "native" (include "revoked.sidecarNative" .) "test" false) }}
{{- end }}

{{/*
revoked.terminationGracePeriodSeconds: time for the shutdown delay, in-flight checks
(--shutdown-timeout, 10 s) and a margin; at least Kubernetes' default of 30.
*/}}
{{- define "revoked.terminationGracePeriodSeconds" -}}
{{- max 30 (add (int .Values.sidecar.shutdownDelaySeconds) 15) }}
{{- end }}

{{/*
revoked.sidecarContainer is revoked.sidecar with its options: "root" (the chart's context),
"native" (restartPolicy: Always) and "test" (the helm test pod: gRPC and HTTP on the pod IP
so the kubelet's gRPC probe reaches grpc.health.v1, startup gated by it).
*/}}
{{- define "revoked.sidecarContainer" -}}
{{- $root := .root }}
{{- $v := $root.Values.sidecar }}
{{- if and $v.jwks.url $v.jwks.configMap.name }}
{{- fail "revoked: sidecar.jwks.url and sidecar.jwks.configMap.name exclude each other" }}
{{- end }}
{{- if and $v.jwks.url (not (hasPrefix "https://" $v.jwks.url)) }}
{{- fail "revoked: sidecar.jwks.url must be https://: keys fetched over plain HTTP can be replaced on the way" }}
{{- end }}
{{- if and (not $v.audiences) (not $v.allowAnyAudience) }}
{{- fail "revoked: set sidecar.audiences (the aud your services' tokens carry), or sidecar.allowAnyAudience=true to accept tokens the IdP issued for any service" }}
{{- end }}
{{- $pk := $root.Values.snapshot.publicKey }}
{{- if and $pk.pem $pk.configMap.name }}
{{- fail "revoked: snapshot.publicKey.pem and snapshot.publicKey.configMap.name exclude each other" }}
{{- end -}}
{{- $nats := dict "root" $root "role" "sidecar" "prefix" "REVOKED" -}}
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
    {{- include "revoked.natsArgs" $nats | trim | nindent 4 }}
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
    # The revocation window, the same value the stream's MaxAge is derived from.
    - --max-token-lifetime={{ $root.Values.revocationWindow }}
    {{- range $root.Values.cutoffClaims }}
    - --cutoff-claim={{ . }}
    {{- end }}
    # On SIGTERM, keep answering this long: Envoy drains its requests meanwhile.
    - --shutdown-delay={{ int $v.shutdownDelaySeconds }}s
    - --max-staleness={{ $v.maxStaleness }}
    - --stale-policy={{ $v.stalePolicy }}
    - --log-level={{ $v.logLevel }}
    {{- if $root.Values.snapshot.enabled }}
    - --snapshot-bucket={{ $root.Values.snapshot.bucket }}
    - --snapshot-public-key=/etc/revoked/snapshot-public-key/{{ $pk.configMap.key }}
    {{- end }}
    {{- with $v.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- with $v.gc.percent }}
    - name: GOGC
      value: {{ . | quote }}
    {{- end }}
    {{- $mem := dig "limits" "memory" "" $v.resources }}
    {{- if and $mem $v.gc.memoryLimitPercent }}
    # A soft limit below the container's: the GC works harder before the OOM killer acts.
    - name: GOMEMLIMIT
      value: {{ div (mul (include "revoked.quantityBytes" $mem | int64) (int64 $v.gc.memoryLimitPercent)) 100 | quote }}
    {{- end }}
    {{- if dig "limits" "cpu" "" $v.resources }}
    - name: GOMAXPROCS
      valueFrom:
        resourceFieldRef:
          containerName: revoked
          resource: limits.cpu
          divisor: "1"
    {{- else if $v.gc.maxProcs }}
    # No CPU limit: without this Go would run one thread per core of the node.
    - name: GOMAXPROCS
      value: {{ $v.gc.maxProcs | quote }}
    {{- end }}
    {{- with include "revoked.natsEnv" $nats | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with $v.env }}
    {{- toYaml . | nindent 4 }}
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
The gRPC address revoked listens on (--grpc-addr) and Envoy calls.
*/}}
{{- define "revoked.grpcAddr" -}}
{{- if eq .Values.sidecar.transport "unix" }}
{{- printf "unix://%s" .Values.sidecar.socketPath }}
{{- else }}
{{- printf "127.0.0.1:%d" (int .Values.sidecar.ports.grpc) }}
{{- end }}
{{- end }}

{{/* Volume mounts of the revoked container; same argument as revoked.sidecarContainer. */}}
{{- define "revoked.sidecarVolumeMounts" -}}
{{- $root := .root }}
{{- $v := $root.Values.sidecar }}
{{- include "revoked.natsVolumeMounts" (dict "root" $root "role" "sidecar") }}
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
{{- with $v.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
revoked.socketVolumeMount mounts the directory of the Unix socket (sidecar.transport=unix)
in a container: revoked's and Envoy's. revoked makes the socket mode 0660: Envoy must run
as revoked's user (65532) or in its group.
*/}}
{{- define "revoked.socketVolumeMount" -}}
- name: revoked-socket
  mountPath: {{ dir .Values.sidecar.socketPath }}
{{- end }}

{{/* revoked.sidecarVolumes renders the volumes (list items) revoked.sidecar mounts. */}}
{{- define "revoked.sidecarVolumes" -}}
{{- include "revoked.sidecarVolumeList" . | trim }}
{{- end }}

{{- define "revoked.sidecarVolumeList" -}}
{{- $v := .Values.sidecar }}
{{- include "revoked.natsVolumes" (dict "root" . "role" "sidecar") }}
{{- if $v.jwks.configMap.name }}
- name: revoked-jwks
  configMap:
    name: {{ $v.jwks.configMap.name }}
{{- end }}
{{- if .Values.snapshot.enabled }}
# Optional: an application's namespace may not hold the key yet. Without the file the
# sidecar trusts no snapshot and replays the whole stream (it says so in its log and in
# revoked_snapshot_loads_total{result="no_key"}); it never waits for the key.
- name: revoked-snapshot-public-key
  configMap:
    name: {{ include "revoked.snapshotPublicKeyConfigMap" . }}
    optional: true
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
{{- with $v.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
