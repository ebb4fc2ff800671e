{{/*
The sidecar container, in one of two flavors:
  asya  the asya project's Go sidecar (RabbitMQ or SQS), configured through
        the variables its internal/config/config.go reads;
  fake  this project's file-queue sidecar (tests and the e2e suite).
Both read ASYA_SOCKET_DIR and ASYA_ACTOR_NAME. The Go sidecar waits for the
runtime's `runtime-ready` file in the socket directory before it consumes.
The Go sidecar's tag is the first release the asya project's CHANGELOG lists
as published; pulling it is not possible here, so it is not tested here.
*/}}

{{- define "asya-actor.sidecarDefaultImage" -}}
{{- if eq . "asya" -}}
{"repository": "ghcr.io/deliveryhero/asya-sidecar", "tag": "0.1.0"}
{{- else -}}
{"repository": "localhost/asya-sidecar-fake", "tag": "dev"}
{{- end }}
{{- end }}

{{/*
A secretKeyRef env entry. Input: dict "name" <variable> "secret" {name, key}.
*/}}
{{- define "asya-actor.secretEnv" -}}
{{- toJson (dict "name" .name "valueFrom" (dict "secretKeyRef" (dict "name" .secret.name "key" .secret.key))) }}
{{- end }}

{{/*
The variables the chart gives the sidecar. Input: dict "root" "actor".
Output: JSON list of env entries.
*/}}
{{- define "asya-actor.sidecarChartEnv" -}}
{{- $a := .actor }}
{{- $s := $a.sidecar }}
{{- $env := list (dict "name" "ASYA_SOCKET_DIR" "value" (include "asya-actor.socketDir" .root)) (dict "name" "ASYA_ACTOR_NAME" "value" $a.actorName) }}
{{- $timeout := include "asya-actor.digits" $s.runtimeTimeout }}
{{- if eq $s.flavor "asya" }}
{{- $env = append $env (dict "name" "ASYA_LOG_LEVEL" "value" $a.logLevel) }}
{{- $env = append $env (dict "name" "ASYA_TRANSPORT" "value" $s.transport) }}
{{- /* A Go duration: the asya sidecar ignores a bare number. */}}
{{- $env = append $env (dict "name" "ASYA_RUNTIME_TIMEOUT" "value" (printf "%ss" $timeout)) }}
{{- $env = append $env (dict "name" "ASYA_ACTOR_HAPPY_END" "value" $s.happyEndQueue) }}
{{- $env = append $env (dict "name" "ASYA_ACTOR_ERROR_END" "value" $s.errorEndQueue) }}
{{- if eq $s.transport "rabbitmq" }}
{{- $r := $s.rabbitmq }}
{{- if $r.urlSecret.name }}
{{- $env = append $env (include "asya-actor.secretEnv" (dict "name" "ASYA_RABBITMQ_URL" "secret" $r.urlSecret) | fromJson) }}
{{- else if $r.url }}
{{- $env = append $env (dict "name" "ASYA_RABBITMQ_URL" "value" $r.url) }}
{{- else }}
{{- $env = append $env (dict "name" "ASYA_RABBITMQ_HOST" "value" $r.host) }}
{{- $env = append $env (dict "name" "ASYA_RABBITMQ_PORT" "value" (include "asya-actor.digits" $r.port)) }}
{{- if $r.username }}
{{- $env = append $env (dict "name" "ASYA_RABBITMQ_USERNAME" "value" $r.username) }}
{{- end }}
{{- if $r.passwordSecret.name }}
{{- $env = append $env (include "asya-actor.secretEnv" (dict "name" "ASYA_RABBITMQ_PASSWORD" "secret" $r.passwordSecret) | fromJson) }}
{{- end }}
{{- end }}
{{- $env = append $env (dict "name" "ASYA_RABBITMQ_EXCHANGE" "value" $r.exchange) }}
{{- $env = append $env (dict "name" "ASYA_RABBITMQ_PREFETCH" "value" (include "asya-actor.digits" $r.prefetch)) }}
{{- else }}
{{- $q := $s.sqs }}
{{- if $q.endpoint }}
{{- $env = append $env (dict "name" "ASYA_SQS_ENDPOINT" "value" $q.endpoint) }}
{{- end }}
{{- $env = append $env (dict "name" "ASYA_AWS_REGION" "value" $q.region) }}
{{- if gt ($q.visibilityTimeout | int64) 0 }}
{{- $env = append $env (dict "name" "ASYA_SQS_VISIBILITY_TIMEOUT" "value" (include "asya-actor.digits" $q.visibilityTimeout)) }}
{{- end }}
{{- $env = append $env (dict "name" "ASYA_SQS_WAIT_TIME_SECONDS" "value" (include "asya-actor.digits" $q.waitTimeSeconds)) }}
{{- end }}
{{- $env = append $env (dict "name" "ASYA_METRICS_ENABLED" "value" (ternary "true" "false" $s.metrics.enabled)) }}
{{- if $s.metrics.enabled }}
{{- $env = append $env (dict "name" "ASYA_METRICS_ADDR" "value" (printf ":%s" (include "asya-actor.digits" $s.metrics.port))) }}
{{- end }}
{{- else }}
{{- $env = append $env (dict "name" "ASYA_CALL_TIMEOUT" "value" $timeout) }}
{{- end }}
{{- toJson $env }}
{{- end }}

{{/*
The sidecar's env: the chart's variables, each replaced by a sidecar.env entry
of the same name, then the other sidecar.env entries in their order.
*/}}
{{- define "asya-actor.sidecarEnv" -}}
{{- $a := .actor }}
{{- $socketDir := include "asya-actor.socketDir" .root }}
{{- $userEnv := $a.sidecar.env | default list }}
{{- $userByName := dict }}
{{- range $entry := $userEnv }}
{{- if has $entry.name (list "ASYA_SOCKET_DIR" "ASYA_ACTOR_NAME") }}
{{- fail (printf "sidecar.env sets %s, which the chart sets (ASYA_SOCKET_DIR=%s; ASYA_ACTOR_NAME from the value actorName); remove that entry" $entry.name $socketDir) }}
{{- end }}
{{- $_ := set $userByName $entry.name $entry }}
{{- end }}
{{- $env := list }}
{{- $chartNames := dict }}
{{- range $entry := include "asya-actor.sidecarChartEnv" . | fromJsonArray }}
{{- $_ := set $chartNames $entry.name true }}
{{- $env = append $env (get $userByName $entry.name | default $entry) }}
{{- end }}
{{- range $entry := $userEnv }}
{{- if not (hasKey $chartNames $entry.name) }}
{{- $env = append $env $entry }}
{{- end }}
{{- end }}
{{- toJson $env }}
{{- end }}

{{/*
The sidecar container. Input: dict "root" "actor". Output: YAML.
*/}}
{{- define "asya-actor.sidecarContainer" -}}
{{- $a := .actor }}
{{- $s := $a.sidecar }}
{{- $socketDir := include "asya-actor.socketDir" .root }}
{{- $socketVolume := include "asya-actor.socketVolume" .root }}
{{- $ownVolumes := include "asya-actor.ownVolumes" .root | fromJsonArray }}
{{- range $mount := $s.extraVolumeMounts }}
{{- if or (eq $mount.mountPath $socketDir) (has $mount.name $ownVolumes) }}
{{- fail (printf "sidecar.extraVolumeMounts mounts %q at %s: the chart already mounts the socket volume at %s; remove that entry" $mount.name $mount.mountPath $socketDir) }}
{{- end }}
{{- end }}
{{- $default := include "asya-actor.sidecarDefaultImage" $s.flavor | fromJson }}
{{- if and $s.image.repository (not (or $s.image.tag $s.image.digest)) }}
{{- fail (printf "sidecar.image.repository is %s but sidecar.image has no tag or digest: pin one (the flavor's default tag belongs to its default image)" $s.image.repository) }}
{{- end }}
{{- $image := dict "repository" (default $default.repository $s.image.repository) "tag" (default $default.tag $s.image.tag) "digest" $s.image.digest }}
{{- $container := dict
    "name" (include "asya-actor.sidecarContainerName" .root)
    "image" (include "asya-actor.imageRef" $image)
    "imagePullPolicy" $s.image.pullPolicy
    "env" (include "asya-actor.sidecarEnv" . | fromJsonArray)
    "volumeMounts" (prepend $s.extraVolumeMounts (dict "name" $socketVolume "mountPath" $socketDir))
    "securityContext" (deepCopy $s.securityContext) }}
{{- with $s.envFrom }}
{{- $_ := set $container "envFrom" . }}
{{- end }}
{{- with $s.resources }}
{{- $_ := set $container "resources" (deepCopy .) }}
{{- end }}
{{- if and (eq $s.flavor "asya") $s.metrics.enabled }}
{{- $_ := set $container "ports" (list (dict "name" "metrics" "containerPort" ($s.metrics.port | int64) "protocol" "TCP")) }}
{{- end }}
{{- toYaml $container }}
{{- end }}
