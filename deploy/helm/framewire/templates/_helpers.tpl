{{/* Names, labels and shared pieces of the Framewire chart. */}}

{{- define "framewire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "framewire.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component> (ingest, worker, sink). */}}
{{- define "framewire.component" -}}
{{- printf "%s-%s" (include "framewire.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "framewire.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "framewire.labels" -}}
helm.sh/chart: {{ include "framewire.chart" . }}
app.kubernetes.io/name: {{ include "framewire.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: framewire
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: {root, component}. */}}
{{- define "framewire.componentLabels" -}}
{{ include "framewire.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "framewire.selectorLabels" -}}
app.kubernetes.io/name: {{ include "framewire.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "framewire.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "framewire.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "framewire.image" -}}
{{- include "framewire.imageRef" (dict "root" . "image" .Values.image) -}}
{{- end -}}

{{/* An image reference from {repository, tag, digest}: {root, image}. */}}
{{- define "framewire.imageRef" -}}
{{- $img := .image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Most worker replicas: the explicit value or the partition count. */}}
{{- define "framewire.workerMaxReplicas" -}}
{{- $v := .explicit -}}
{{- if kindIs "invalid" $v -}}{{ int .root.Values.topics.partitions }}{{- else -}}{{ int $v }}{{- end -}}
{{- end -}}

{{/* KEDA's target lag per worker replica: lagThreshold when set, else lagSeconds of the
frames one replica decodes per second (the backlog, in seconds, the fleet settles at). */}}
{{- define "framewire.lagThreshold" -}}
{{- $k := .Values.worker.autoscaling.keda -}}
{{- if kindIs "invalid" $k.lagThreshold -}}
{{- max 1 (int (mulf $k.lagSeconds $k.replicaFramesPerSecond)) -}}
{{- else -}}
{{- int $k.lagThreshold -}}
{{- end -}}
{{- end -}}

{{- define "framewire.kedaEnabled" -}}
{{- if and .Values.worker.enabled .Values.worker.autoscaling.keda.enabled -}}true{{- end -}}
{{- end -}}

{{- define "framewire.hpaEnabled" -}}
{{- if and .Values.worker.enabled (not .Values.worker.autoscaling.keda.enabled) .Values.worker.autoscaling.hpa.enabled -}}true{{- end -}}
{{- end -}}

{{- define "framewire.triggerAuthEnabled" -}}
{{- $ta := .Values.worker.autoscaling.keda.triggerAuthentication -}}
{{- if include "framewire.kedaEnabled" . -}}
{{- $a := include "framewire.kafkaAuth" . | fromJson -}}
{{- if or (eq (toString $ta) "true") (and (eq (toString $ta) "auto") (or $a.sasl $a.clientSecret .Values.kafka.tls.caSecret)) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------------ TOML rendering ---
  The services read TOML. These helpers render a dict: scalars and inline tables inside
  [section] tables, lists of dicts as [[array]] tables. Keys are always quoted (librdkafka
  options contain dots); strings are JSON-escaped, which TOML basic strings accept; numbers
  go through toJson so 604800000 stays an integer. Null values are left out (binary default). */}}
{{- define "framewire.tomlValue" -}}
{{- if kindIs "map" . -}}
{ {{- $first := true -}}{{- range $k, $v := . -}}{{- if not (kindIs "invalid" $v) -}}{{- if not $first -}}, {{ end -}}{{- $first = false -}}{{ toJson $k }} = {{ include "framewire.tomlValue" $v }}{{- end -}}{{- end -}} }
{{- else if kindIs "slice" . -}}
[{{- range $i, $v := . -}}{{- if $i -}}, {{ end -}}{{ include "framewire.tomlValue" $v }}{{- end -}}]
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{- define "framewire.toml" -}}
{{- range $section, $body := . }}
{{- if kindIs "map" $body }}
[{{ $section }}]
{{- range $k, $v := $body }}
{{- if not (kindIs "invalid" $v) }}
{{ toJson $k }} = {{ include "framewire.tomlValue" $v }}
{{- end }}
{{- end }}
{{ else if kindIs "slice" $body }}
{{- range $item := $body }}
[[{{ $section }}]]
{{- range $k, $v := $item }}
{{- if not (kindIs "invalid" $v) }}
{{ toJson $k }} = {{ include "framewire.tomlValue" $v }}
{{- end }}
{{- end }}
{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The KafkaUser's name: kafka.user.name, else the full name. */}}
{{- define "framewire.kafkaUserName" -}}
{{- .Values.kafka.user.name | default (include "framewire.fullname" .) -}}
{{- end -}}

{{/* How the fleet (and KEDA) authenticates to Kafka, as JSON: kafka.sasl and kafka.tls, or,
     with kafka.user.enabled, the Secret Strimzi's User Operator makes for the KafkaUser
     (SCRAM: key `password`, the user name is the KafkaUser's; TLS: user.crt and user.key).
     {sasl, mechanism, protocol, secret, username (literal, or "" = from usernameKey),
      usernameKey, passwordKey, clientSecret, certKey, keyKey} */}}
{{- define "framewire.kafkaAuth" -}}
{{- $s := .Values.kafka.sasl -}}
{{- $t := .Values.kafka.tls -}}
{{- $u := .Values.kafka.user -}}
{{- $a := dict "sasl" $s.enabled "mechanism" $s.mechanism "protocol" $s.securityProtocol
  "secret" $s.existingSecret "username" "" "usernameKey" $s.usernameKey "passwordKey" $s.passwordKey
  "clientSecret" $t.clientSecret "certKey" $t.certKey "keyKey" $t.keyKey -}}
{{- if $u.enabled -}}
{{- if or $s.enabled $t.clientSecret -}}
{{- fail "kafka.user.enabled: the KafkaUser's Secret is the fleet's credentials; unset kafka.sasl.enabled and kafka.tls.clientSecret" -}}
{{- end -}}
{{- $name := include "framewire.kafkaUserName" . -}}
{{- if eq $u.authentication "scram-sha-512" -}}
{{- $_ := set $a "sasl" true -}}
{{- $_ := set $a "mechanism" "SCRAM-SHA-512" -}}
{{- $_ := set $a "secret" $name -}}
{{- $_ := set $a "username" $name -}}
{{- $_ := set $a "passwordKey" "password" -}}
{{- else -}}
{{- $_ := set $a "clientSecret" $name -}}
{{- $_ := set $a "certKey" "user.crt" -}}
{{- $_ := set $a "keyKey" "user.key" -}}
{{- end -}}
{{- end -}}
{{- if and $a.sasl (not $a.secret) -}}
{{- fail "kafka.sasl.existingSecret is required when kafka.sasl.enabled" -}}
{{- end -}}
{{- toJson $a -}}
{{- end -}}

{{/* [kafka] and [topics], shared by the three services. */}}
{{- define "framewire.kafkaConfig" -}}
{{- $opts := deepCopy .Values.kafka.options -}}
{{- $a := include "framewire.kafkaAuth" . | fromJson -}}
{{- if $a.sasl -}}
{{- $_ := set $opts "security.protocol" $a.protocol -}}
{{- $_ := set $opts "sasl.mechanism" $a.mechanism -}}
{{- with $a.username -}}
{{- $_ := set $opts "sasl.username" . -}}
{{- end -}}
{{- else if or $a.clientSecret .Values.kafka.tls.caSecret -}}
{{- $_ := set $opts "security.protocol" ($opts | dig "security.protocol" "SSL") -}}
{{- end -}}
{{- if .Values.kafka.tls.caSecret -}}
{{- $_ := set $opts "ssl.ca.location" "/etc/framewire/kafka-ca/ca.crt" -}}
{{- end -}}
{{- if $a.clientSecret -}}
{{- $_ := set $opts "ssl.certificate.location" "/etc/framewire/secrets/kafka-client.crt" -}}
{{- $_ := set $opts "ssl.key.location" "/etc/framewire/secrets/kafka-client.key" -}}
{{- end -}}
{{- $t := .Values.topics -}}
{{- toJson (dict
  "kafka" (dict "brokers" .Values.kafka.brokers "options" $opts)
  "topics" (dict "frames" $t.frames "stats" $t.stats "detections" $t.detections "control" $t.control "dlq" $t.dlq "leases" $t.leases
    "create" $t.create "partitions" $t.partitions "replication_factor" $t.replicationFactor
    "frames_retention_ms" $t.framesRetentionMs "stats_retention_ms" $t.statsRetentionMs
    "max_message_bytes" $t.maxMessageBytes)) -}}
{{- end -}}

{{/* Environment shared by the containers: logging, tracing, Kafka secrets, the admin token. */}}
{{- define "framewire.commonEnv" -}}
- name: FRAMEWIRE_LOG
  value: {{ .Values.logLevel | quote }}
- name: FRAMEWIRE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- with .Values.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- $a := include "framewire.kafkaAuth" . | fromJson }}
{{- if $a.sasl }}
{{- if not $a.username }}
- name: FRAMEWIRE_KAFKA__OPTIONS__SASL_USERNAME_FILE
  value: /etc/framewire/secrets/kafka-sasl-username
{{- end }}
- name: FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD_FILE
  value: /etc/framewire/secrets/kafka-sasl-password
{{- end }}
{{- if .Values.adminToken.existingSecret }}
- name: FRAMEWIRE_ADMIN__TOKEN_FILE
  value: /etc/framewire/secrets/admin-token
{{- end }}
{{- end -}}

{{/* The Secrets a component reads, as projected-volume sources: {root, component}. Secrets
     reach the services as files under /etc/framewire/secrets (FRAMEWIRE_*_FILE variables),
     never as environment variables. Camera passwords are not among them: they have a
     directory of their own (framewire.cameraCredentialSources), the only one camera specs
     may name files in. */}}
{{- define "framewire.secretSources" -}}
{{- $v := .root.Values -}}
{{- $a := include "framewire.kafkaAuth" .root | fromJson }}
{{- if $a.sasl }}
- secret:
    name: {{ $a.secret }}
    items:
      {{- if not $a.username }}
      - key: {{ $a.usernameKey }}
        path: kafka-sasl-username
      {{- end }}
      - key: {{ $a.passwordKey }}
        path: kafka-sasl-password
{{- end }}
{{- with $a.clientSecret }}
- secret:
    name: {{ . }}
    items:
      - key: {{ $a.certKey }}
        path: kafka-client.crt
      - key: {{ $a.keyKey }}
        path: kafka-client.key
{{- end }}
{{- with $v.adminToken.existingSecret }}
- secret:
    name: {{ . }}
    items:
      - key: {{ $v.adminToken.key }}
        path: admin-token
{{- end }}
{{- if eq .component "sink" }}
{{- with $v.sink.database.existingSecret }}
- secret:
    name: {{ . }}
    items:
      - key: {{ $v.sink.database.key }}
        path: sink-database-url
{{- end }}
{{- end }}
{{- end -}}

{{/* Where ingest reads camera passwords: [ingest] credentials_dir (ingest.config), by default
     /etc/framewire/camera-credentials. Camera specs may name files only inside it, and
     ingest refuses to start when a FRAMEWIRE_*_FILE setting points inside it, so it must
     not be, contain or lie inside another of the chart's mounts. */}}
{{- define "framewire.credentialsDir" -}}
{{- $raw := .Values.ingest.config.credentials_dir | default "/etc/framewire/camera-credentials" -}}
{{- if not (hasPrefix "/" $raw) -}}
{{- fail (printf "ingest.config.credentials_dir %q: must be an absolute path" $raw) -}}
{{- end -}}
{{- $dir := trimSuffix "/" $raw -}}
{{- range list "/etc/framewire/secrets" "/etc/framewire/config" "/etc/framewire/kafka-ca" "/tmp" -}}
{{- if or (eq $dir .) (hasPrefix (printf "%s/" $dir) .) (hasPrefix (printf "%s/" .) $dir) -}}
{{- fail (printf "ingest.config.credentials_dir %q: camera passwords need a directory of their own, not %s, a directory around it or inside it" $raw .) -}}
{{- end -}}
{{- end -}}
{{- $dir -}}
{{- end -}}

{{/* The camera passwords, as projected-volume sources of ingest's camera-credentials volume:
     every key of ingest.credentialsSecret, then each config camera's key as
     config-camera-<i> (its password_file; credentialsSecret keys of that name would collide).
     No setting secret may be projected there: a camera spec could name it. */}}
{{- define "framewire.cameraCredentialSources" -}}
{{- $v := .Values -}}
{{- $a := include "framewire.kafkaAuth" . | fromJson -}}
{{- /* Secret name -> its keys the services read as settings ("*" = every key). */ -}}
{{- $settings := dict -}}
{{- with $v.adminToken.existingSecret }}{{ $_ := set $settings . (append (get $settings . | default list) $v.adminToken.key) }}{{ end -}}
{{- if $a.sasl }}{{ $_ := set $settings $a.secret (concat (get $settings $a.secret | default list) (list $a.usernameKey $a.passwordKey)) }}{{ end -}}
{{- with $a.clientSecret }}{{ $_ := set $settings . (concat (get $settings . | default list) (list $a.certKey $a.keyKey)) }}{{ end -}}
{{- with $v.sink.database.existingSecret }}{{ $_ := set $settings . (append (get $settings . | default list) $v.sink.database.key) }}{{ end -}}
{{- with $v.ingest.credentialsSecret }}
{{- if hasKey $settings . }}
{{- fail (printf "ingest.credentialsSecret %q also holds settings secrets (admin token, Kafka or database credentials), and every key of it is mounted where camera specs can name files: keep camera passwords in a Secret of their own" .) }}
{{- end }}
- secret:
    name: {{ . }}
{{- end }}
{{- range $i, $cam := $v.ingest.cameras }}
{{- with $cam.credentials }}
{{- if has .key (get $settings (.existingSecret | default "") | default list) }}
{{- fail (printf "ingest.cameras[%d].credentials: key %q of Secret %q is a settings secret (admin token, Kafka or database credentials), not a camera password" $i .key .existingSecret) }}
{{- end }}
- secret:
    name: {{ required (printf "ingest.cameras[%d].credentials.existingSecret is required" $i) .existingSecret }}
    items:
      - key: {{ required (printf "ingest.cameras[%d].credentials.key is required" $i) .key }}
        path: config-camera-{{ $i }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes and mounts shared by the containers: config, /tmp, the Kafka CA, the secrets. */}}
{{- define "framewire.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "framewire.component" . }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .root.Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .root.Values.kafka.tls.caSecret }}
    items:
      - key: {{ .root.Values.kafka.tls.caKey }}
        path: ca.crt
{{- end }}
{{- with include "framewire.secretSources" . }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* {root, component}. Every volume has a directory of its own under /etc/framewire, none
     inside another (a mount point cannot be made inside a read-only volume). */}}
{{- define "framewire.commonMounts" -}}
- name: config
  mountPath: /etc/framewire/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .root.Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/framewire/kafka-ca
  readOnly: true
{{- end }}
{{- if include "framewire.secretSources" . }}
- name: secrets
  mountPath: /etc/framewire/secrets
  readOnly: true
{{- end }}
{{- end -}}

{{/* Probes on the admin port: {root, port}. */}}
{{- define "framewire.probes" -}}
{{- $p := .root.Values.probes -}}
startupProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: 2
  failureThreshold: {{ $p.startupFailureThreshold }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
livenessProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: {{ $p.periodSeconds }}
  failureThreshold: {{ $p.livenessFailureThreshold }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
readinessProbe:
  httpGet: {path: /readyz, port: admin}
  periodSeconds: {{ $p.periodSeconds }}
  failureThreshold: {{ $p.readinessFailureThreshold }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
{{- end -}}

{{/* Topology spread over zones and nodes: {root, component}. */}}
{{- define "framewire.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .root.Values.topologySpread.maxSkew }}
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "framewire.selectorLabels" . | nindent 8 }}
  - maxSkew: {{ .root.Values.topologySpread.maxSkew }}
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "framewire.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* Scheduling knobs of one component: {root, values}. */}}
{{- define "framewire.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
