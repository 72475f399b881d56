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
Volume mounts of the ingest container: NATS files, the bearer token, TLS, the client CA,
and the files of _ingest.tpl.
*/}}
{{- define "revoked.ingestVolumeMounts" -}}
{{- $i := .Values.ingest }}
{{- include "revoked.natsVolumeMounts" (dict "root" . "role" "ingest") }}
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
{{- with include "revoked.ingestFileVolumeMounts" . | trim }}
{{ . }}
{{- end }}
{{- with $i.pod.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Volumes of the ingest pod, matching revoked.ingestVolumeMounts.
*/}}
{{- define "revoked.ingestVolumes" -}}
{{- $i := .Values.ingest }}
{{- include "revoked.natsVolumes" (dict "root" . "role" "ingest") }}
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
{{- with include "revoked.ingestFileVolumes" . | trim }}
{{ . }}
{{- end }}
{{- with $i.pod.extraVolumes }}
{{ toYaml . }}
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

{{/*
revoked.checkWriterIdentity refuses a writer role (ingest, streamAdmin, snapshot: they
publish revocations, manage the stream or write the snapshot every sidecar trusts) that
would connect as the sidecars, whose credentials sit in every application pod. Argument:
dict "root", "role", "what" (the values that enable it, for the message).
*/}}
{{- define "revoked.checkWriterIdentity" -}}
{{- include "revoked.natsAuthCheck" . }}
{{- $s := .root.Values.nats.auth.sidecar }}
{{- $w := index .root.Values.nats.auth .role }}
{{- $sidecarHasOne := or (ne $s.type "none") $s.clientCertSecret }}
{{- $writerHasOne := or (ne $w.type "none") $w.clientCertSecret }}
{{- if and $w.secretName (eq $w.secretName $s.secretName) }}
{{- fail (printf "revoked: nats.auth.%s.secretName is the sidecars' Secret (%s): %s must not run with the credentials every application pod holds; give it its own NATS user (docs/nats-permissions.md)" .role $s.secretName .what) }}
{{- end }}
{{- if and $w.clientCertSecret (eq $w.clientCertSecret $s.clientCertSecret) }}
{{- fail (printf "revoked: nats.auth.%s.clientCertSecret is the sidecars' client certificate (%s): %s needs its own" .role $s.clientCertSecret .what) }}
{{- end }}
{{- if and $sidecarHasOne (not $writerHasOne) }}
{{- fail (printf "revoked: %s has no NATS identity of its own while the sidecars have one: set nats.auth.%s (docs/nats-permissions.md)" .what .role) }}
{{- end }}
{{- end }}

{{/*
revoked.podMeta renders a pod template's metadata labels and annotations. Argument: dict
"root", "component" and "pod" (the workload's pod settings); "annotations" adds more.
*/}}
{{- define "revoked.podMeta" -}}
labels:
  {{- include "revoked.selectorLabels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with .pod.labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with merge (dict) (.annotations | default dict) (.pod.annotations | default dict) }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
revoked.podSettings renders the scheduling fields of a pod spec from the workload's pod
settings: imagePullSecrets, priorityClassName, nodeSelector, affinity, tolerations and
topology spread. Argument: dict "root" and "pod".
*/}}
{{- define "revoked.podSettings" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .pod.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
revoked.snapshotSigningKeySecret: the Secret with the key that signs snapshots, the
user's (snapshot.signingKeySecret.name) or the one the chart generates.
*/}}
{{- define "revoked.snapshotSigningKeySecret" -}}
{{- if .Values.snapshot.signingKeySecret.name }}
{{- .Values.snapshot.signingKeySecret.name }}
{{- else }}
{{- printf "%s-snapshot-signing-key" (include "revoked.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
