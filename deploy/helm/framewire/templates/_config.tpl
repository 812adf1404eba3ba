{{/* The TOML configuration of each service, rendered from values (docs/config.md).
     Used by the ConfigMaps and by the pods' checksum/config annotations. */}}

{{/* ingest.cameras, then the test camera's streams (testCamera.enabled) at its Service. A
     camera's credentials Secret key is mounted as config-camera-<i> in the camera
     credentials directory (ingest.yaml), its password_file. */}}
{{- define "framewire.ingest.cameras" -}}
{{- $out := list -}}
{{- range $i, $cam := .Values.ingest.cameras -}}
{{- $c := omit $cam "credentials" -}}
{{- with $cam.credentials -}}
{{- $_ := set $c "credentials" (dict "username" .username "password_file" (printf "%s/config-camera-%d" (include "framewire.credentialsDir" $) $i)) -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- with .Values.testCamera -}}
{{- if .enabled -}}
{{- $host := include "framewire.component" (dict "root" $ "component" "test-camera") -}}
{{- range .streams -}}
{{- $cam := dict "id" .name "url" (printf "rtsp://%s:%d/%s" $host (int $.Values.testCamera.port) .name) -}}
{{- with .detect }}{{ $_ := set $cam "detect" . }}{{ end -}}
{{- $out = append $out $cam -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $ids := list -}}
{{- range $out -}}
{{- if has .id $ids }}{{ fail (printf "camera id %q is used twice (ingest.cameras, testCamera.streams)" .id) }}{{ end -}}
{{- $ids = append $ids .id -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "framewire.ingest.toml" -}}
{{- if hasKey .Values.ingest.config "admin_token" -}}
{{- fail "ingest.config.admin_token: the admin token moved to adminToken (existingSecret, key), one token for ingest, worker and sink" -}}
{{- end -}}
{{- $cfg := include "framewire.kafkaConfig" . | fromJson -}}
{{- $ingest := deepCopy .Values.ingest.config -}}
{{- $_ := set $ingest "group_id" .Values.ingest.groupId -}}
{{- $_ := set $ingest "lease_slots" (int .Values.ingest.leaseSlots) -}}
{{- $_ := set $cfg "admin" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ingest.adminPort))) -}}
{{- $_ := set $cfg "ingest" $ingest -}}
{{- $cams := include "framewire.ingest.cameras" . | fromJsonArray -}}
{{- if $cams }}{{ $_ := set $cfg "cameras" $cams }}{{ end -}}
# framewire-ingest configuration (docs/config.md), rendered by the Helm chart.
# Secrets are files under /etc/framewire/secrets (FRAMEWIRE_ADMIN__TOKEN_FILE,
# FRAMEWIRE_KAFKA__OPTIONS__SASL_*_FILE). Camera passwords are files in
# {{ include "framewire.credentialsDir" . }}, the only directory a camera's password_file may name.
# Each pod's [ingest] instance_id is its name (FRAMEWIRE_INGEST__INSTANCE_ID).
{{ include "framewire.toml" $cfg }}
{{- end -}}

{{- define "framewire.worker.toml" -}}
{{- $cfg := include "framewire.kafkaConfig" . | fromJson -}}
{{- $worker := deepCopy .Values.worker.config -}}
{{- $_ := set $worker "group_id" .Values.worker.autoscaling.keda.consumerGroup -}}
{{- $_ := set $worker "decoder" .Values.worker.decoder -}}
{{- if and (include "framewire.kedaEnabled" .) (not (hasKey $worker "auto_offset_reset")) -}}
{{- $_ := set $worker "auto_offset_reset" .Values.worker.autoscaling.keda.offsetResetPolicy -}}
{{- end -}}
{{- if .Values.worker.detectors -}}
{{- $_ := set $worker "detectors" .Values.worker.detectors -}}
{{- end -}}
{{- $_ := set $cfg "admin" (dict "listen" (printf "0.0.0.0:%d" (int .Values.worker.adminPort))) -}}
{{- $_ := set $cfg "worker" $worker -}}
{{- /* [detect]: the model in the image, the default rate and the inference threads, then
       any other setting from worker.detect.config. Disabled = no [detect] table at all
       (an empty model turns detection off). */}}
{{- with .Values.worker.detect -}}
{{- if .enabled -}}
{{- $detect := deepCopy (default (dict) .config) -}}
{{- $_ := set $detect "model" .model -}}
{{- $_ := set $detect "rate" .rate -}}
{{- $_ := set $detect "threads" (int .threads) -}}
{{- $_ := set $cfg "detect" $detect -}}
{{- end -}}
{{- end -}}
# framewire-worker configuration (docs/config.md), rendered by the Helm chart.
# The admin token (adminToken, when set) is read from FRAMEWIRE_ADMIN__TOKEN_FILE (a mounted Secret).
{{ include "framewire.toml" $cfg }}
{{- end -}}

{{/* The sink's preview group: sink.config.preview_group_id, else <sink.groupId>-preview. */}}
{{- define "framewire.sinkPreviewGroup" -}}
{{- .Values.sink.config.preview_group_id | default (printf "%s-preview" .Values.sink.groupId) -}}
{{- end -}}

{{- define "framewire.sink.toml" -}}
{{- $cfg := include "framewire.kafkaConfig" . | fromJson -}}
{{- $sink := deepCopy .Values.sink.config -}}
{{- $_ := set $sink "group_id" .Values.sink.groupId -}}
{{- $_ := set $sink "preview_group_id" (include "framewire.sinkPreviewGroup" .) -}}
{{- $_ := set $sink "http_listen" (printf "0.0.0.0:%d" (int .Values.sink.httpPort)) -}}
{{- $_ := set $sink "sqlite_path" "/var/lib/framewire/framewire.sqlite" -}}
{{- $_ := set $cfg "admin" (dict "listen" (printf "0.0.0.0:%d" (int .Values.sink.adminPort))) -}}
{{- $_ := set $cfg "sink" $sink -}}
# framewire-sink configuration (docs/config.md), rendered by the Helm chart.
# The PostgreSQL URL and the admin token (when set) are read from
# FRAMEWIRE_SINK__DATABASE_URL_FILE and FRAMEWIRE_ADMIN__TOKEN_FILE (mounted Secrets).
{{ include "framewire.toml" $cfg }}
{{- end -}}
