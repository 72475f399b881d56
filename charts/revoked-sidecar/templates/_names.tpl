{{/*
Names and labels, shared by the revoked chart and every application chart that depends on
this library (there called with .Subcharts.revoked, the alias).
*/}}
{{- define "revoked.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name, truncated at 63 characters (DNS names). If the release name contains
the chart name it is used as the full name.
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

{{- define "revoked.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "revoked.selectorLabels" -}}
app.kubernetes.io/name: {{ include "revoked.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

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
The ConfigMap holding the public key snapshots are checked with: an existing one
(snapshot.publicKey.configMap.name); in the revoked chart, its own (rendered from
publicKey.pem or from the key it generates); in an application chart, the copy its
namespace holds under the name NOTES.txt gives, revoked-snapshot-public-key. The
revoked chart is the one whose values hold snapshot.signingKeySecret (the library's
schema refuses that key, so an application's values never do).
*/}}
{{- define "revoked.snapshotPublicKeyConfigMap" -}}
{{- if .Values.snapshot.publicKey.configMap.name }}
{{- .Values.snapshot.publicKey.configMap.name }}
{{- else if hasKey .Values.snapshot "signingKeySecret" }}
{{- printf "%s-snapshot-public-key" (include "revoked.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else -}}
revoked-snapshot-public-key
{{- end }}
{{- end }}

{{/*
revoked.quantityBytes turns a Kubernetes memory quantity (512Mi, 1Gi, 500M, 1048576) into
bytes. Decimal fractions and exponents are refused: say 1536Mi, not 1.5Gi.
*/}}
{{- define "revoked.quantityBytes" -}}
{{- $q := toString . }}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- $num := regexFind "^[0-9]+" $q }}
{{- $unit := trimPrefix $num $q }}
{{- if or (not $num) (not (hasKey $units $unit)) }}
{{- fail (printf "revoked: memory limit %q: write it as an integer with an optional Ki, Mi, Gi, Ti, k, M, G or T suffix to derive GOMEMLIMIT (sidecar.gc.memoryLimitPercent)" $q) }}
{{- end }}
{{- mul (int64 $num) (index $units $unit) }}
{{- end }}
