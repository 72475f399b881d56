{{/*
The ingest API's settings that take more than one value: caller authentication, OAuth
clients, back-channel logout and the Shared Signals transmitters file. Files come from
Secrets and ConfigMaps mounted under /etc/revoked/ingest.
*/}}

{{/*
revoked.ingestChecks refuses settings `revoked ingest` would refuse at start, or that
would let any holder of a certificate the CA signs publish revocations.
*/}}
{{- define "revoked.ingestChecks" -}}
{{- $i := .Values.ingest }}
{{- $a := $i.auth }}
{{- /* Without API credentials, only the endpoints that authenticate each request run
(as revoked ingest decides): OAuth clients, back-channel logout, Shared Signals. */}}
{{- if not (or $a.bearerTokenSecret.name $a.clientCASecret.name) }}
{{- $jwks := or $a.jwksUrl $a.jwksConfigMap.name }}
{{- if and $jwks (not $a.oauthClients) (not $i.logout.audiences) }}
{{- fail "revoked: ingest.auth.jwksUrl (or jwksConfigMap) without ingest.logout.audiences serves /oauth2/revoke, to which no caller could authenticate: set ingest.auth.bearerTokenSecret.name, clientCASecret.name or oauthClients" }}
{{- end }}
{{- if not (or (and $jwks (or $a.oauthClients $i.logout.audiences)) $i.ssf.transmitters) }}
{{- fail "revoked: the ingest API needs caller authentication: set ingest.auth.bearerTokenSecret.name or ingest.auth.clientCASecret.name (there is no anonymous mode), or serve only endpoints that authenticate each request: ingest.ssf.transmitters, ingest.logout.audiences or ingest.auth.oauthClients with ingest.auth.jwksUrl" }}
{{- end }}
{{- end }}
{{- if and $a.clientCASecret.name (not $i.tls.secretName) }}
{{- fail "revoked: ingest.auth.clientCASecret (mutual TLS) needs ingest.tls.secretName" }}
{{- end }}
{{- if and $a.clientCASecret.name (not $a.clientCertNames) }}
{{- fail "revoked: ingest.auth.clientCASecret needs ingest.auth.clientCertNames (--client-cert-name): without the allow-list, any certificate the CA signs may publish revocations" }}
{{- end }}
{{- if and $a.clientCertNames (not $a.clientCASecret.name) }}
{{- fail "revoked: ingest.auth.clientCertNames needs ingest.auth.clientCASecret.name" }}
{{- end }}
{{- if and $a.jwksUrl $a.jwksConfigMap.name }}
{{- fail "revoked: ingest.auth.jwksUrl and ingest.auth.jwksConfigMap.name exclude each other" }}
{{- end }}
{{- $jwks := or $a.jwksUrl $a.jwksConfigMap.name }}
{{- if and $a.oauthClients (not $jwks) }}
{{- fail "revoked: ingest.auth.oauthClients needs ingest.auth.jwksUrl or jwksConfigMap, to verify the tokens /oauth2/revoke revokes" }}
{{- end }}
{{- if and $i.logout.audiences (not $jwks) }}
{{- fail "revoked: ingest.logout.audiences needs ingest.auth.jwksUrl or jwksConfigMap, to verify logout tokens" }}
{{- end }}
{{- /* ingest's default --leeway is 10s; --logout-max-age + 2 × leeway must fit 2m. */}}
{{- $maxAge := include "revoked.seconds" $i.logout.maxAge | float64 }}
{{- if or (le $maxAge 0.0) (gt $maxAge 100.0) }}
{{- fail (printf "revoked: ingest.logout.maxAge %s: with twice the 10s leeway it must fit the stream's 2m duplicate window, which refuses a logout token replayed to another replica: more than 0s, at most 100s" $i.logout.maxAge) }}
{{- end }}
{{- $issuers := concat (list) ($i.logout.allowMissingExp | default list) }}
{{- range $i.logout.cutoffByIssuer }}
{{- $issuers = append $issuers .issuer }}
{{- end }}
{{- range $issuers }}
{{- if and $a.issuers (not (has . $a.issuers)) }}
{{- fail (printf "revoked: ingest.logout names issuer %s, which is not in ingest.auth.issuers" .) }}
{{- end }}
{{- end }}
{{- $seen := dict }}
{{- range $n, $t := $i.ssf.transmitters }}
{{- $where := printf "ingest.ssf.transmitters[%d] (%s)" $n $t.issuer }}
{{- if hasKey $seen $t.issuer }}
{{- fail (printf "revoked: %s: the issuer is listed twice" $where) }}
{{- end }}
{{- $_ := set $seen $t.issuer true }}
{{- if eq (empty $t.jwksUri) (empty $t.jwksConfigMap) }}
{{- fail (printf "revoked: %s: set jwksUri or jwksConfigMap, one of them" $where) }}
{{- end }}
{{- /* stream: {} asks for stream management with the defaults: present, even empty. */}}
{{- $managed := hasKey $t "stream" }}
{{- $polled := or $t.pollEndpoint (and $managed (eq ($t.stream.delivery | default "") "poll")) }}
{{- if and (not $polled) (not $t.pushAuthorizationSecret) }}
{{- fail (printf "revoked: %s: pushAuthorizationSecret is required unless it is polled (pollEndpoint)" $where) }}
{{- end }}
{{- $pushedStream := and $managed (or (eq ($t.stream.delivery | default "") "push") (and (not $t.stream.delivery) (not $t.pollEndpoint))) }}
{{- if and $pushedStream (not $t.stream.pushEndpoint) }}
{{- fail (printf "revoked: %s: stream.pushEndpoint (this receiver's public /ssf/events URL) is required for a pushed stream" $where) }}
{{- end }}
{{- if and $t.bearerTokenSecret $t.clientCredentials }}
{{- fail (printf "revoked: %s: set bearerTokenSecret or clientCredentials, not both" $where) }}
{{- end }}
{{- if and (or $polled $managed) (not (or $t.bearerTokenSecret $t.clientCredentials)) }}
{{- fail (printf "revoked: %s: polling and stream management need bearerTokenSecret or clientCredentials" $where) }}
{{- end }}
{{- /* One event type by URI and by short name (its last path element) with different policies. */}}
{{- $policies := dict }}
{{- range $key, $p := $t.events }}
{{- $name := regexReplaceAll "^.*/" $key "" }}
{{- with get $policies $name }}
{{- if ne (index . 1) $p }}
{{- fail (printf "revoked: %s: events: event type %s is given different policies under two spellings (%s: %s, %s: %s); keep one" $where $name (index . 0) (index . 1) $key $p) }}
{{- end }}
{{- end }}
{{- $_ := set $policies $name (list $key $p) }}
{{- end }}
{{- $claims := list ($t.userClaim | default "sub") }}
{{- if $t.emailSubjects }}
{{- $claims = append $claims ($t.emailClaim | default "email") }}
{{- end }}
{{- range $claims }}
{{- if not (or (has . (list "sub" "sid" "client_id")) (has . $.Values.cutoffClaims)) }}
{{- fail (printf "revoked: %s revokes by claim %s: add it to cutoffClaims (the sidecars and ingest must allow it)" $where .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
revoked.seconds converts a Go duration (90s, 1m30s, 1.5m) to seconds.
*/}}
{{- define "revoked.seconds" -}}
{{- $unit := dict "ns" 1e-9 "us" 1e-6 "µs" 1e-6 "ms" 1e-3 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9.]+(ns|us|µs|ms|s|m|h)" (toString .) -1 }}
{{- $n := regexFind "^[0-9.]+" . }}
{{- $total = addf $total (mulf ($n | float64) (get $unit (trimPrefix $n .))) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
revoked.ingestAuthArgs renders the arguments of caller authentication, OAuth clients,
back-channel logout and Shared Signals.
*/}}
{{- define "revoked.ingestAuthArgs" -}}
{{- $i := .Values.ingest }}
{{- $a := $i.auth }}
{{- with $a.bearerTokenSecret.name }}
- --bearer-token-file=/etc/revoked/ingest/bearer/{{ $a.bearerTokenSecret.key }}
{{- end }}
{{- with $a.jwksUrl }}
- --jwks-url={{ . }}
{{- end }}
{{- with $a.jwksConfigMap.name }}
- --jwks-file=/etc/revoked/ingest/jwks/{{ $a.jwksConfigMap.key }}
{{- end }}
{{- range $a.issuers }}
- --issuer={{ . }}
{{- end }}
{{- range $a.audiences }}
- --audience={{ . }}
{{- end }}
{{- if $i.tls.secretName }}
- --tls-cert=/etc/revoked/ingest/tls/tls.crt
- --tls-key=/etc/revoked/ingest/tls/tls.key
{{- end }}
{{- with $a.clientCASecret.name }}
- --client-ca=/etc/revoked/ingest/client-ca/{{ $a.clientCASecret.key }}
{{- end }}
{{- range $a.clientCertNames }}
- --client-cert-name={{ . }}
{{- end }}
{{- range $n, $c := $a.oauthClients }}
- --oauth-client={{ $c.id }}:/etc/revoked/ingest/oauth/{{ $n }}/{{ $c.key | default "client-secret" }}
{{- if $c.privileged }}
- --oauth-privileged-client={{ $c.id }}
{{- end }}
{{- end }}
{{- range $i.logout.audiences }}
- --logout-audience={{ . }}
{{- end }}
- --logout-cutoff={{ $i.logout.cutoff }}
{{- range $i.logout.cutoffByIssuer }}
- --logout-cutoff={{ .issuer }}={{ .mode }}
{{- end }}
{{- range $i.logout.allowMissingExp }}
- --logout-allow-missing-exp={{ . }}
{{- end }}
- --logout-max-age={{ $i.logout.maxAge }}
{{- range .Values.cutoffClaims }}
- --cutoff-claim={{ . }}
{{- end }}
{{- if $i.ssf.transmitters }}
- --ssf-transmitters=/etc/revoked/ingest/ssf-config/transmitters.yaml
{{- end }}
{{- end }}

{{/*
revoked.ssfTransmitters renders the --ssf-transmitters file from ingest.ssf.transmitters:
the file's own keys, its files at the paths revoked.ingestFileVolumeMounts mounts.
*/}}
{{- define "revoked.ssfTransmitters" -}}
{{- $out := list }}
{{- range $n, $t := .Values.ingest.ssf.transmitters }}
{{- $dir := printf "/etc/revoked/ingest/ssf/%d" $n }}
{{- $o := dict "issuer" $t.issuer "audience" $t.audience }}
{{- with $t.jwksUri }}{{ $_ := set $o "jwks_uri" . }}{{ end }}
{{- with $t.jwksConfigMap }}{{ $_ := set $o "jwks_file" (printf "%s/jwks/%s" $dir (.key | default "jwks.json")) }}{{ end }}
{{- with $t.pushAuthorizationSecret }}{{ $_ := set $o "push_authorization_file" (printf "%s/push/%s" $dir (.key | default "authorization")) }}{{ end }}
{{- with $t.bearerTokenSecret }}{{ $_ := set $o "bearer_token_file" (printf "%s/bearer/%s" $dir (.key | default "token")) }}{{ end }}
{{- with $t.clientCredentials }}
{{- $cc := dict "token_url" .tokenUrl "client_id" .clientId "client_secret_file" (printf "%s/oauth/%s" $dir (.clientSecretSecret.key | default "client-secret")) }}
{{- with .scopes }}{{ $_ := set $cc "scopes" . }}{{ end }}
{{- with .authMethod }}{{ $_ := set $cc "auth_method" . }}{{ end }}
{{- $_ := set $o "client_credentials" $cc }}
{{- end }}
{{- range $key, $file := dict "tokenIssuers" "token_issuers" "pollEndpoint" "poll_endpoint" "pollInterval" "poll_interval" "legacyTyp" "legacy_typ" "dryRun" "dry_run" "events" "events" "emailSubjects" "email_subjects" "userClaim" "user_claim" "emailClaim" "email_claim" "maxAge" "max_age" }}
{{- if hasKey $t $key }}{{ $_ := set $o $file (index $t $key) }}{{ end }}
{{- end }}
{{- with $t.quirks }}
{{- $q := dict }}
{{- range $key, $file := dict "subjectInEvent" "subject_in_event" "subjectType" "subject_type" "millisecondTimestamps" "millisecond_timestamps" }}
{{- if hasKey $t.quirks $key }}{{ $_ := set $q $file (index $t.quirks $key) }}{{ end }}
{{- end }}
{{- $_ := set $o "quirks" $q }}
{{- end }}
{{- if hasKey $t "stream" }}
{{- $st := dict }}
{{- range $key, $file := dict "delivery" "delivery" "pushEndpoint" "push_endpoint" "eventsRequested" "events_requested" "verifyEvery" "verify_every" }}
{{- if hasKey $t.stream $key }}{{ $_ := set $st $file (index $t.stream $key) }}{{ end }}
{{- end }}
{{- $_ := set $o "stream" $st }}
{{- end }}
{{- $out = append $out $o }}
{{- end }}
{{- toYaml (dict "transmitters" $out) }}
{{- end }}

{{/*
revoked.ingestFileVolumeMounts mounts the JWKS file, the OAuth client secrets, the transmitters file
and each transmitter's Secrets and ConfigMap where the arguments and the file name them.
*/}}
{{- define "revoked.ingestFileVolumeMounts" -}}
{{- $i := .Values.ingest }}
{{- if $i.auth.jwksConfigMap.name }}
- name: jwks
  mountPath: /etc/revoked/ingest/jwks
  readOnly: true
{{- end }}
{{- range $n, $c := $i.auth.oauthClients }}
- name: oauth-{{ $n }}
  mountPath: /etc/revoked/ingest/oauth/{{ $n }}
  readOnly: true
{{- end }}
{{- if $i.ssf.transmitters }}
- name: ssf-transmitters
  mountPath: /etc/revoked/ingest/ssf-config
  readOnly: true
{{- end }}
{{- range $n, $t := $i.ssf.transmitters }}
{{- range $what := list "jwks" "push" "bearer" "oauth" }}
{{- if index $t (get (dict "jwks" "jwksConfigMap" "push" "pushAuthorizationSecret" "bearer" "bearerTokenSecret" "oauth" "clientCredentials") $what) }}
- name: ssf-{{ $n }}-{{ $what }}
  mountPath: /etc/revoked/ingest/ssf/{{ $n }}/{{ $what }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
revoked.ingestFileVolumes: the volumes of revoked.ingestFileVolumeMounts.
*/}}
{{- define "revoked.ingestFileVolumes" -}}
{{- $i := .Values.ingest }}
{{- with $i.auth.jwksConfigMap.name }}
- name: jwks
  configMap:
    name: {{ . }}
{{- end }}
{{- range $n, $c := $i.auth.oauthClients }}
- name: oauth-{{ $n }}
  secret:
    secretName: {{ $c.secretName }}
{{- end }}
{{- if $i.ssf.transmitters }}
- name: ssf-transmitters
  configMap:
    name: {{ include "revoked.fullname" . }}-ssf-transmitters
{{- end }}
{{- range $n, $t := $i.ssf.transmitters }}
{{- with $t.jwksConfigMap }}
- name: ssf-{{ $n }}-jwks
  configMap:
    name: {{ .name }}
{{- end }}
{{- with $t.pushAuthorizationSecret }}
- name: ssf-{{ $n }}-push
  secret:
    secretName: {{ .name }}
{{- end }}
{{- with $t.bearerTokenSecret }}
- name: ssf-{{ $n }}-bearer
  secret:
    secretName: {{ .name }}
{{- end }}
{{- with $t.clientCredentials }}
- name: ssf-{{ $n }}-oauth
  secret:
    secretName: {{ .clientSecretSecret.name }}
{{- end }}
{{- end }}
{{- end }}
