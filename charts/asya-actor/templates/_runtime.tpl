{{/*
The runtime side of the pod: the copy init container and the user's
asya-runtime container with the runtime wired in.
*/}}

{{/*
The init container that copies asya_runtime.py into the runtime volume
(runtimeDelivery initContainer). Input: dict "root" "actor". Output: YAML.
*/}}
{{- define "asya-actor.copyInitContainer" -}}
{{- $a := .actor }}
{{- $runtimeDir := include "asya-actor.runtimeDir" .root }}
name: {{ include "asya-actor.copyContainerName" .root }}
image: {{ include "asya-actor.runtimeImageRef" . }}
imagePullPolicy: {{ $a.runtimeImage.pullPolicy }}
args: [{{ $runtimeDir | quote }}]
volumeMounts:
  - name: {{ include "asya-actor.runtimeVolume" .root }}
    mountPath: {{ $runtimeDir }}
{{- with $a.runtimeImage.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
  readOnlyRootFilesystem: true
  runAsNonRoot: true
{{- end }}

{{/*
The probe command: the runtime file's own --probe mode, run by the model
image's interpreter. It checks that the socket exists and that the process
named in the runtime's ready file is alive; it never connects, so a handler
call of any length cannot make it fail. -I -S: no PYTHONPATH, user site or
.pth files, so the probe starts fast and never imports the model's code.
*/}}
{{- define "asya-actor.probeCommand" -}}
{{- toJson (list .actor.workload.pythonExecutable "-I" "-S" (include "asya-actor.runtimePath" .root) "--probe") }}
{{- end }}

{{/*
The runtime's variables the chart sets from its values: the one list of
them (NOTES names those a user's own env entry overrides). Input: an actor.
Output: JSON list of env entries.
*/}}
{{- define "asya-actor.runtimeChartEnv" -}}
{{- $a := . }}
{{- $chartEnv := list }}
{{- if $a.handler }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_HANDLER" "value" $a.handler) }}
{{- end }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_HANDLER_MODE" "value" $a.handlerMode) }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_INCLUDE_METADATA" "value" (ternary "true" "false" $a.includeMetadata)) }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_CHUNK_SIZE" "value" (include "asya-actor.digits" $a.chunkSize)) }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_ENABLE_VALIDATION" "value" (ternary "true" "false" $a.enableValidation)) }}
{{- if gt ($a.maxMessageSize | int64) 0 }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_MAX_MESSAGE_SIZE" "value" (include "asya-actor.digits" $a.maxMessageSize)) }}
{{- end }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_LOG_LEVEL" "value" $a.logLevel) }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_LOG_FORMAT" "value" $a.logFormat) }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_ACCESS_LOG" "value" (ternary "true" "false" $a.accessLog)) }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_REPLY_FORMAT" "value" $a.replyFormat) }}
{{- if gt ($a.handlerTimeout | float64) 0.0 }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_HANDLER_TIMEOUT" "value" (toString $a.handlerTimeout)) }}
{{- end }}
{{- toJson $chartEnv }}
{{- end }}

{{/*
The env of the asya-runtime container: the user's entries first (their order
matters for $(VAR) references), then each chart value whose variable the user
did not set, then ASYA_SOCKET_DIR. Input: dict "root" "actor" "container".
Output: YAML {env: [...]}.
*/}}
{{- define "asya-actor.runtimeEnv" -}}
{{- $a := .actor }}
{{- $container := .container }}
{{- $runtimeName := include "asya-actor.runtimeContainerName" .root }}
{{- $userEnv := $container.env | default list }}
{{- $userNames := dict }}
{{- range $entry := $userEnv }}
{{- $_ := set $userNames $entry.name true }}
{{- end }}
{{- if hasKey $userNames "ASYA_SOCKET_DIR" }}
{{- fail (printf "container %s sets ASYA_SOCKET_DIR in its env: the chart sets it to %s, the volume shared with the sidecar; remove that env entry" $runtimeName (include "asya-actor.socketDir" .root)) }}
{{- end }}
{{- $handlerPattern := include "asya-actor.handlerPattern" .root }}
{{- range $entry := $userEnv }}
{{- if and (eq $entry.name "ASYA_HANDLER") (hasKey $entry "value") (not (regexMatch $handlerPattern (toString $entry.value))) }}
{{- fail (printf "container %s has ASYA_HANDLER=%q in its env: expected module.path.function or module.path.Class.method, e.g. my_package.handler.process (a standalone /foo/bar/script.py is script.predict with PYTHONPATH=/foo/bar)" $runtimeName (toString $entry.value)) }}
{{- end }}
{{- end }}
{{- if not (or $a.handler (hasKey $userNames "ASYA_HANDLER") $container.envFrom) }}
{{- fail (printf "no handler%s: set the value handler (module.path.function, e.g. my_package.handler.process) or an ASYA_HANDLER entry in the env of container %s" (ternary (printf " for actor %q" $a.actorName) "" $a.inList) $runtimeName) }}
{{- end }}
{{- $chartEnv := include "asya-actor.runtimeChartEnv" $a | fromJsonArray }}
{{- $env := $userEnv }}
{{- range $entry := $chartEnv }}
{{- if not (hasKey $userNames $entry.name) }}
{{- $env = append $env $entry }}
{{- end }}
{{- end }}
{{- $env = append $env (dict "name" "ASYA_SOCKET_DIR" "value" (include "asya-actor.socketDir" .root)) }}
{{- toYaml (dict "env" $env) }}
{{- end }}

{{/*
Refuses what would break the runtime in the user's asya-runtime container.
Input: dict "root" "actor" "container".
*/}}
{{- define "asya-actor.checkRuntimeContainer" -}}
{{- $a := .actor }}
{{- $container := .container }}
{{- $runtimeName := include "asya-actor.runtimeContainerName" .root }}
{{- $runtimeDir := include "asya-actor.runtimeDir" .root }}
{{- $socketDir := include "asya-actor.socketDir" .root }}
{{- $ownVolumes := include "asya-actor.ownVolumes" .root | fromJsonArray }}
{{- if not $container.image }}
{{- fail (printf "container %s has no image: set workload.template.spec.containers[].image to your model image" $runtimeName) }}
{{- end }}
{{- if $container.command }}
{{- fail (printf "container %s sets command %s: the chart runs [%s, %s]; remove command and set workload.pythonExecutable if the interpreter is not %s" $runtimeName (toJson $container.command) $a.workload.pythonExecutable (include "asya-actor.runtimePath" .root) $a.workload.pythonExecutable) }}
{{- end }}
{{- if $container.args }}
{{- fail (printf "container %s sets args %s: the runtime takes no arguments; configure it with the chart values (handler, handlerMode, ...) or ASYA_* env entries" $runtimeName (toJson $container.args)) }}
{{- end }}
{{- range $mount := $container.volumeMounts | default list }}
{{- if or (eq $mount.mountPath $socketDir) (eq $mount.mountPath $runtimeDir) (has $mount.name $ownVolumes) }}
{{- fail (printf "container %s mounts volume %q at %s: the chart owns %s, %s and the volumes %s; use another path and volume name" $runtimeName $mount.name $mount.mountPath $runtimeDir $socketDir (join ", " $ownVolumes)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Whether the container mounts something at /tmp itself. Output: "true" or "".
*/}}
{{- define "asya-actor.mountsTmp" -}}
{{- range $mount := .volumeMounts | default list }}
{{- if eq (trimSuffix "/" $mount.mountPath) "/tmp" }}true{{- end }}
{{- end }}
{{- end }}

{{/*
The user's asya-runtime container with the runtime wired in: command, env,
mounts, securityContext defaults and probes. With "native" true it is a
restartable init container (restartPolicy Always), which keeps its probes.
Input: dict "root" "actor" "container". Output: YAML of the container.
*/}}
{{- define "asya-actor.runtimeContainer" -}}
{{- $root := .root }}
{{- $a := .actor }}
{{- include "asya-actor.checkRuntimeContainer" . }}
{{- $container := deepCopy .container }}
{{- $mounts := $container.volumeMounts | default list }}
{{- $runtimeMount := dict "name" (include "asya-actor.runtimeVolume" $root) "mountPath" (include "asya-actor.runtimeDir" $root) "readOnly" true }}
{{- if eq $a.runtimeDelivery "imageVolume" }}
{{- $_ := set $runtimeMount "subPath" (include "asya-actor.runtimeImageDir" $root) }}
{{- end }}
{{- $mounts = append $mounts $runtimeMount }}
{{- $mounts = append $mounts (dict "name" (include "asya-actor.socketVolume" $root) "mountPath" (include "asya-actor.socketDir" $root)) }}
{{- if and $a.tmpVolume.enabled (not (include "asya-actor.mountsTmp" .container)) }}
{{- $mounts = append $mounts (dict "name" (include "asya-actor.tmpVolume" $root) "mountPath" "/tmp") }}
{{- end }}
{{- $_ := set $container "volumeMounts" $mounts }}
{{- $_ := set $container "command" (list $a.workload.pythonExecutable (include "asya-actor.runtimePath" $root)) }}
{{- $_ := set $container "env" (include "asya-actor.runtimeEnv" . | fromYaml).env }}
{{- $_ := set $container "securityContext" (include "asya-actor.securityContextOverlay" (dict "defaults" $a.securityContext "over" $container.securityContext) | fromJson) }}
{{- if $a.probes.enabled }}
{{- $exec := dict "command" (include "asya-actor.probeCommand" . | fromJsonArray) }}
{{- range $probe := list (list "startupProbe" $a.probes.startup) (list "readinessProbe" $a.probes.readiness) (list "livenessProbe" $a.probes.liveness) }}
{{- if not (hasKey $container (index $probe 0)) }}
{{- $_ := set $container (index $probe 0) (merge (dict "exec" $exec) (deepCopy (index $probe 1))) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $a.nativeSidecar }}
{{- $_ := set $container "restartPolicy" "Always" }}
{{- end }}
{{- toYaml $container }}
{{- end }}
