{{/*
NATS identities. Every process that talks to NATS does so as one role of nats.auth
(sidecar, ingest, streamAdmin, snapshot), each with its own Secret: the sidecars, in every
application pod, can only read; only the writers can publish, manage the stream or write
the snapshot bucket. Each role may use any mode the binaries support: a .creds file
(--nats-creds), an NKey seed (--nats-nkey), user/password or a token (from the Secret into
<PREFIX>_NATS_USER, _PASSWORD, _TOKEN: never on the command line), and a client certificate
for mutual TLS (clientCertSecret, with any of them).

The helpers take a dict: "root" (the chart's context), "role" (a key of nats.auth) and, for
revoked.natsEnv, "prefix" (REVOKED or REVOKECTL, the binary's environment prefix).
*/}}

{{/* revoked.natsAuth checks a role's settings and returns nothing. */}}
{{- define "revoked.natsAuthCheck" -}}
{{- $a := index .root.Values.nats.auth .role }}
{{- if not (has $a.type (list "none" "creds" "nkey" "userPassword" "token")) }}
{{- fail (printf "revoked: nats.auth.%s.type %q: want none, creds, nkey, userPassword or token" .role $a.type) }}
{{- end }}
{{- if and (ne $a.type "none") (not $a.secretName) }}
{{- fail (printf "revoked: nats.auth.%s.type=%s needs nats.auth.%s.secretName" .role $a.type .role) }}
{{- end }}
{{- if and (eq $a.type "none") $a.secretName }}
{{- fail (printf "revoked: nats.auth.%s.secretName is set but type is none: say creds, nkey, userPassword or token" .role) }}
{{- end }}
{{- end }}

{{/* revoked.natsKey is the key of a role's secret (its default depends on the type). */}}
{{- define "revoked.natsKey" -}}
{{- $a := index .root.Values.nats.auth .role }}
{{- $a.key | default (get (dict "creds" "nats.creds" "nkey" "nkey.seed" "userPassword" "password" "token" "token") $a.type) }}
{{- end }}

{{/* revoked.natsArgs: the --nats-*, --stream and --subject-prefix flags of a role. */}}
{{- define "revoked.natsArgs" -}}
{{- include "revoked.natsAuthCheck" . }}
{{- $nats := .root.Values.nats }}
{{- $a := index $nats.auth .role }}
{{- $dir := printf "/etc/revoked/nats/%s" (kebabcase .role) }}
- --nats-url={{ $nats.url }}
{{- if eq $a.type "creds" }}
- --nats-creds={{ $dir }}/{{ include "revoked.natsKey" . }}
{{- else if eq $a.type "nkey" }}
- --nats-nkey={{ $dir }}/{{ include "revoked.natsKey" . }}
{{- end }}
{{- if $nats.tls.caSecret }}
- --nats-tls-ca=/etc/revoked/nats/ca/{{ $nats.tls.caKey }}
{{- end }}
{{- if $a.clientCertSecret }}
- --nats-tls-cert={{ $dir }}-tls/tls.crt
- --nats-tls-key={{ $dir }}-tls/tls.key
{{- end }}
- --stream={{ $nats.stream }}
- --subject-prefix={{ $nats.subjectPrefix }}
{{- end }}

{{/* revoked.natsEnv: user/password or token of a role, from its Secret. */}}
{{- define "revoked.natsEnv" -}}
{{- $a := index .root.Values.nats.auth .role }}
{{- if eq $a.type "userPassword" }}
- name: {{ .prefix }}_NATS_USER
  valueFrom:
    secretKeyRef:
      name: {{ $a.secretName }}
      key: {{ $a.userKey | default "user" }}
- name: {{ .prefix }}_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $a.secretName }}
      key: {{ include "revoked.natsKey" . }}
{{- else if eq $a.type "token" }}
- name: {{ .prefix }}_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $a.secretName }}
      key: {{ include "revoked.natsKey" . }}
{{- end }}
{{- end }}

{{/* revoked.natsVolumeMounts: the files of a role (creds or NKey, client certificate) and the CA. */}}
{{- define "revoked.natsVolumeMounts" -}}
{{- $a := index .root.Values.nats.auth .role }}
{{- $name := printf "revoked-nats-%s" (kebabcase .role) }}
{{- if has $a.type (list "creds" "nkey") }}
- name: {{ $name }}
  mountPath: /etc/revoked/nats/{{ kebabcase .role }}
  readOnly: true
{{- end }}
{{- if $a.clientCertSecret }}
- name: {{ $name }}-tls
  mountPath: /etc/revoked/nats/{{ kebabcase .role }}-tls
  readOnly: true
{{- end }}
{{- if .root.Values.nats.tls.caSecret }}
- name: revoked-nats-ca
  mountPath: /etc/revoked/nats/ca
  readOnly: true
{{- end }}
{{- end }}

{{/* revoked.natsVolumes: the volumes revoked.natsVolumeMounts mounts. */}}
{{- define "revoked.natsVolumes" -}}
{{- $a := index .root.Values.nats.auth .role }}
{{- $name := printf "revoked-nats-%s" (kebabcase .role) }}
{{- if has $a.type (list "creds" "nkey") }}
- name: {{ $name }}
  secret:
    secretName: {{ $a.secretName }}
    items:
      - key: {{ include "revoked.natsKey" . }}
        path: {{ include "revoked.natsKey" . }}
{{- end }}
{{- if $a.clientCertSecret }}
- name: {{ $name }}-tls
  secret:
    secretName: {{ $a.clientCertSecret }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- if .root.Values.nats.tls.caSecret }}
- name: revoked-nats-ca
  secret:
    secretName: {{ .root.Values.nats.tls.caSecret }}
    items:
      - key: {{ .root.Values.nats.tls.caKey }}
        path: {{ .root.Values.nats.tls.caKey }}
{{- end }}
{{- end }}

{{/*
revoked.natsEgress renders NetworkPolicy egress rules (list items) that let a pod reach the
NATS servers (networkPolicy.natsPeers, natsPort) and DNS, and nothing else: add them to the
policy of a workload that runs the sidecar.
*/}}
{{- define "revoked.natsEgress" -}}
- to:
    {{- toYaml .Values.networkPolicy.natsPeers | nindent 4 }}
  ports:
    - protocol: TCP
      port: {{ .Values.networkPolicy.natsPort }}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
