{{/*
Names and labels, following `helm create`.
*/}}
{{- define "asya-actor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. Truncated at 63 characters because some Kubernetes name
fields are limited to that (DNS labels). A release name that already contains
the chart name is used as is.
*/}}
{{- define "asya-actor.fullname" -}}
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

{{- define "asya-actor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "asya-actor.labels" -}}
helm.sh/chart: {{ include "asya-actor.chart" . }}
{{ include "asya-actor.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: actor
app.kubernetes.io/part-of: asya
{{- end }}

{{- define "asya-actor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "asya-actor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The queue the sidecar consumes. The two end queues are the pipeline's sinks,
so an actor may not take their names.
*/}}
{{- define "asya-actor.actorName" -}}
{{- $actorName := default .Release.Name .Values.actorName }}
{{- if has $actorName (list "happy-end" "error-end") }}
{{- fail (printf "actorName %q is reserved for the pipeline's end queue; choose another actorName (or release name)" $actorName) }}
{{- end }}
{{- $actorName }}
{{- end }}

{{/*
Fixed paths shared by the runtime, the sidecar and the probes. The runtime and
the sidecar only agree on the socket through ASYA_SOCKET_DIR, so the chart owns it.
*/}}
{{- define "asya-actor.socketDir" -}}/var/run/asya{{- end }}
{{- define "asya-actor.runtimeDir" -}}/opt/asya{{- end }}

{{/*
Exec probe command: connect to the runtime's socket with the model image's own
interpreter (no shell needed). -I -S skip PYTHONPATH, user site and .pth files:
the probe needs only the standard library and starts faster without them.
A connect succeeds while a long message is being handled (the listen backlog
accepts it), so a busy runtime stays ready.
*/}}
{{- define "asya-actor.probeCommand" -}}
{{- $socketPath := printf "%s/asya-runtime.sock" (include "asya-actor.socketDir" .) }}
{{- $program := printf "import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(4); s.connect(%s)" (squote $socketPath) }}
{{- toJson (list .Values.workload.pythonExecutable "-I" "-S" "-c" $program) }}
{{- end }}

{{/*
The env of the asya-runtime container: the user's entries first (their order
matters for $(VAR) references), then each first-class value whose variable the
user did not set, then ASYA_SOCKET_DIR.
Input: dict "root" $ "container" <user container>. Output: YAML {env: [...]}.
*/}}
{{- define "asya-actor.runtimeEnv" -}}
{{- $v := .root.Values }}
{{- $container := .container }}
{{- $userEnv := $container.env | default list }}
{{- $userNames := dict }}
{{- range $entry := $userEnv }}
{{- $_ := set $userNames $entry.name true }}
{{- end }}
{{- if hasKey $userNames "ASYA_SOCKET_DIR" }}
{{- fail (printf "container asya-runtime sets ASYA_SOCKET_DIR in its env: the chart sets it to %s, the volume shared with the sidecar; remove that env entry" (include "asya-actor.socketDir" .root)) }}
{{- end }}
{{- $handlerPattern := "^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)+$" }}
{{- range $entry := $userEnv }}
{{- if and (eq $entry.name "ASYA_HANDLER") (hasKey $entry "value") (not (regexMatch $handlerPattern (toString $entry.value))) }}
{{- fail (printf "container asya-runtime has ASYA_HANDLER=%q in its env: expected module.path.function, e.g. my_package.handler.process (a standalone /foo/bar/script.py is script.predict with PYTHONPATH=/foo/bar)" (toString $entry.value)) }}
{{- end }}
{{- end }}
{{- if not (or $v.handler (hasKey $userNames "ASYA_HANDLER") $container.envFrom) }}
{{- fail "no handler: set the value handler (module.path.function, e.g. my_package.handler.process) or an ASYA_HANDLER entry in the env of container asya-runtime" }}
{{- end }}
{{- $chartEnv := list }}
{{- if $v.handler }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_HANDLER" "value" $v.handler) }}
{{- end }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_HANDLER_MODE" "value" $v.handlerMode) }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_INCLUDE_METADATA" "value" (ternary "true" "false" $v.includeMetadata)) }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_CHUNK_SIZE" "value" ($v.chunkSize | int64 | toString)) }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_ENABLE_VALIDATION" "value" (ternary "true" "false" $v.enableValidation)) }}
{{- if gt ($v.maxMessageSize | int64) 0 }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_MAX_MESSAGE_SIZE" "value" ($v.maxMessageSize | int64 | toString)) }}
{{- end }}
{{- $chartEnv = append $chartEnv (dict "name" "ASYA_LOG_LEVEL" "value" $v.logLevel) }}
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
The user's asya-runtime container with the runtime wired in: command, env,
mounts, securityContext defaults and probes.
Input: dict "root" $ "container" <user container>. Output: YAML of the container.
*/}}
{{- define "asya-actor.runtimeContainer" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $container := deepCopy .container }}
{{- $socketDir := include "asya-actor.socketDir" $root }}
{{- $runtimeDir := include "asya-actor.runtimeDir" $root }}
{{- if not $container.image }}
{{- fail "container asya-runtime has no image: set workload.template.spec.containers[].image to your model image" }}
{{- end }}
{{- if $container.command }}
{{- fail (printf "container asya-runtime sets command %s: the chart runs [%s, %s]; remove command and set workload.pythonExecutable if the interpreter is not %s" (toJson $container.command) $v.workload.pythonExecutable $runtimeDir $v.workload.pythonExecutable) }}
{{- end }}
{{- if $container.args }}
{{- fail (printf "container asya-runtime sets args %s: the runtime takes no arguments; configure it with the chart values (handler, handlerMode, ...) or ASYA_* env entries" (toJson $container.args)) }}
{{- end }}
{{- $mounts := $container.volumeMounts | default list }}
{{- $mountsTmp := false }}
{{- range $mount := $mounts }}
{{- if or (eq $mount.mountPath $socketDir) (eq $mount.mountPath $runtimeDir) (has $mount.name (list "asya-runtime" "asya-socket" "asya-tmp")) }}
{{- fail (printf "container asya-runtime mounts volume %q at %s: the chart owns %s, %s and the volumes asya-runtime, asya-socket and asya-tmp; use another path and volume name" $mount.name $mount.mountPath $runtimeDir $socketDir) }}
{{- end }}
{{- if eq (trimSuffix "/" $mount.mountPath) "/tmp" }}
{{- $mountsTmp = true }}
{{- end }}
{{- end }}
{{- $mounts = append $mounts (dict "name" "asya-runtime" "mountPath" $runtimeDir "readOnly" true) }}
{{- $mounts = append $mounts (dict "name" "asya-socket" "mountPath" $socketDir) }}
{{- if and $v.tmpVolume.enabled (not $mountsTmp) }}
{{- $mounts = append $mounts (dict "name" "asya-tmp" "mountPath" "/tmp") }}
{{- end }}
{{- $_ := set $container "volumeMounts" $mounts }}
{{- /* The directory, not asya_runtime.py: its __main__.py imports the runtime, so the .pyc the init container copied is used instead of compiling the file at every start. */}}
{{- $_ := set $container "command" (list $v.workload.pythonExecutable $runtimeDir) }}
{{- $_ := set $container "env" (include "asya-actor.runtimeEnv" (dict "root" $root "container" .container) | fromYaml).env }}
{{- /* Key by key, not sprig's merge: merge would replace a user's false with the default true. */}}
{{- $securityContext := deepCopy $v.securityContext }}
{{- range $key, $value := $container.securityContext | default dict }}
{{- $_ := set $securityContext $key $value }}
{{- end }}
{{- $_ := set $container "securityContext" $securityContext }}
{{- if $v.probes.enabled }}
{{- $exec := dict "command" (include "asya-actor.probeCommand" $root | fromJsonArray) }}
{{- range $probe := list (list "startupProbe" $v.probes.startup) (list "readinessProbe" $v.probes.readiness) (list "livenessProbe" $v.probes.liveness) }}
{{- if not (hasKey $container (index $probe 0)) }}
{{- $_ := set $container (index $probe 0) (merge (dict "exec" $exec) (deepCopy (index $probe 1))) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $container }}
{{- end }}

{{/*
The pod spec: the user's workload.template.spec with the runtime injected.
With "forTest" true it is the helm test pod instead: the same init containers,
volumes and placement, but one container that starts the runtime, checks it
and exits, and no sidecar.
Input: dict "root" $ "forTest" bool. Output: YAML of the pod spec.
*/}}
{{- define "asya-actor.podSpec" -}}
{{- $root := .root }}
{{- $forTest := .forTest }}
{{- $v := $root.Values }}
{{- $socketDir := include "asya-actor.socketDir" $root }}
{{- $runtimeDir := include "asya-actor.runtimeDir" $root }}
{{- $spec := deepCopy ($v.workload.template.spec | default dict) }}
{{- $ownVolumes := list "asya-runtime" "asya-socket" "asya-tmp" }}

{{- if and $spec.restartPolicy (ne $spec.restartPolicy "Always") }}
{{- fail (printf "workload.template.spec.restartPolicy is %q: a Deployment's pods restart Always; remove it" $spec.restartPolicy) }}
{{- end }}
{{- range $field := list "nodeSelector" "tolerations" "affinity" }}
{{- if and (index $v $field) (index $spec $field) }}
{{- fail (printf "%s is set both as a top-level value and in workload.template.spec; set it in one place" $field) }}
{{- end }}
{{- if index $v $field }}
{{- $_ := set $spec $field (deepCopy (index $v $field)) }}
{{- end }}
{{- end }}

{{- $runtimeContainer := dict }}
{{- $containers := list }}
{{- $containerNames := list }}
{{- range $container := $spec.containers | default list }}
{{- if not $container.name }}
{{- fail "every container in workload.template.spec.containers needs a name; the model container is named asya-runtime" }}
{{- end }}
{{- $containerNames = append $containerNames $container.name }}
{{- if eq $container.name "asya-sidecar" }}
{{- fail "workload.template.spec.containers has a container named asya-sidecar: the chart adds the sidecar itself (configure it under the value sidecar); rename or remove that container" }}
{{- end }}
{{- if eq $container.name "asya-runtime" }}
{{- if $runtimeContainer }}
{{- fail "workload.template.spec.containers has more than one container named asya-runtime; keep one" }}
{{- end }}
{{- $runtimeContainer = include "asya-actor.runtimeContainer" (dict "root" $root "container" $container) | fromYaml }}
{{- $containers = append $containers $runtimeContainer }}
{{- else }}
{{- $containers = append $containers $container }}
{{- end }}
{{- end }}
{{- if not $runtimeContainer }}
{{- fail (printf "workload.template.spec.containers has no container named asya-runtime (found: %s). Give your model container that name, e.g.\nworkload:\n  template:\n    spec:\n      containers:\n      - name: asya-runtime\n        image: registry.example.com/ml/my-model:1.0" (toJson $containerNames)) }}
{{- end }}

{{- $initContainers := list }}
{{- range $container := $spec.initContainers | default list }}
{{- if eq $container.name "asya-runtime-init" }}
{{- fail "workload.template.spec.initContainers has a container named asya-runtime-init: the chart adds it (configure it under the value runtimeImage); rename or remove that init container" }}
{{- end }}
{{- end }}
{{- $copyRuntime := dict
    "name" "asya-runtime-init"
    "image" (printf "%s:%s" $v.runtimeImage.repository $v.runtimeImage.tag)
    "imagePullPolicy" $v.runtimeImage.pullPolicy
    "args" (list $runtimeDir)
    "volumeMounts" (list (dict "name" "asya-runtime" "mountPath" $runtimeDir))
    "resources" (deepCopy $v.runtimeImage.resources)
    "securityContext" (dict "allowPrivilegeEscalation" false "capabilities" (dict "drop" (list "ALL")) "readOnlyRootFilesystem" true "runAsNonRoot" true) }}
{{- $_ := set $spec "initContainers" (prepend ($spec.initContainers | default list) $copyRuntime) }}

{{- $volumes := $spec.volumes | default list }}
{{- range $volume := $volumes }}
{{- if has $volume.name $ownVolumes }}
{{- fail (printf "workload.template.spec.volumes has a volume named %q: the chart owns the volumes %s; rename yours" $volume.name (join ", " $ownVolumes)) }}
{{- end }}
{{- end }}
{{- $volumes = append $volumes (dict "name" "asya-runtime" "emptyDir" dict) }}
{{- $volumes = append $volumes (dict "name" "asya-socket" "emptyDir" dict) }}
{{- $usesTmpVolume := false }}
{{- range $mount := $runtimeContainer.volumeMounts }}
{{- if eq $mount.name "asya-tmp" }}
{{- $usesTmpVolume = true }}
{{- end }}
{{- end }}
{{- if $usesTmpVolume }}
{{- $tmpDir := dict }}
{{- if $v.tmpVolume.sizeLimit }}
{{- $_ := set $tmpDir "sizeLimit" $v.tmpVolume.sizeLimit }}
{{- end }}
{{- $volumes = append $volumes (dict "name" "asya-tmp" "emptyDir" $tmpDir) }}
{{- end }}
{{- $_ := set $spec "volumes" $volumes }}

{{- if $forTest }}
{{- $smokeTest := $runtimeContainer }}
{{- $_ := set $smokeTest "name" "runtime-smoke-test" }}
{{- $_ := set $smokeTest "command" (list $v.workload.pythonExecutable "-c" ($root.Files.Get "files/smoke_test.py") ($v.test.readyTimeoutSeconds | int64 | toString) $runtimeDir) }}
{{- range $probe := list "startupProbe" "readinessProbe" "livenessProbe" "lifecycle" "ports" }}
{{- $_ := unset $smokeTest $probe }}
{{- end }}
{{- if $v.test.resources }}
{{- $_ := set $smokeTest "resources" (deepCopy $v.test.resources) }}
{{- end }}
{{- $_ := set $spec "containers" (list $smokeTest) }}
{{- $_ := set $spec "restartPolicy" "Never" }}
{{- else }}
{{- range $mount := $v.sidecar.extraVolumeMounts }}
{{- if or (eq $mount.mountPath $socketDir) (has $mount.name $ownVolumes) }}
{{- fail (printf "sidecar.extraVolumeMounts mounts %q at %s: the chart already mounts the socket volume at %s; remove that entry" $mount.name $mount.mountPath $socketDir) }}
{{- end }}
{{- end }}
{{- range $entry := $v.sidecar.env }}
{{- if has $entry.name (list "ASYA_SOCKET_DIR" "ASYA_ACTOR_NAME") }}
{{- fail (printf "sidecar.env sets %s, which the chart sets (ASYA_SOCKET_DIR=%s; ASYA_ACTOR_NAME from the value actorName); remove that entry" $entry.name $socketDir) }}
{{- end }}
{{- end }}
{{- $sidecarEnv := list (dict "name" "ASYA_SOCKET_DIR" "value" $socketDir) (dict "name" "ASYA_ACTOR_NAME" "value" (include "asya-actor.actorName" $root)) }}
{{- $sidecar := dict
    "name" "asya-sidecar"
    "image" (printf "%s:%s" $v.sidecar.image.repository $v.sidecar.image.tag)
    "imagePullPolicy" $v.sidecar.image.pullPolicy
    "env" (concat $sidecarEnv $v.sidecar.env)
    "volumeMounts" (prepend $v.sidecar.extraVolumeMounts (dict "name" "asya-socket" "mountPath" $socketDir))
    "securityContext" (deepCopy $v.sidecar.securityContext) }}
{{- if $v.sidecar.resources }}
{{- $_ := set $sidecar "resources" (deepCopy $v.sidecar.resources) }}
{{- end }}
{{- $_ := set $spec "containers" (append $containers $sidecar) }}
{{- end }}

{{- $podSecurityContext := deepCopy $v.podSecurityContext }}
{{- range $key, $value := $spec.securityContext | default dict }}
{{- $_ := set $podSecurityContext $key $value }}
{{- end }}
{{- $_ := set $spec "securityContext" $podSecurityContext }}
{{- if not (hasKey $spec "terminationGracePeriodSeconds") }}
{{- $_ := set $spec "terminationGracePeriodSeconds" ($v.terminationGracePeriodSeconds | int64) }}
{{- end }}
{{- if not (hasKey $spec "automountServiceAccountToken") }}
{{- /* The runtime and sidecar never call the Kubernetes API. */}}
{{- $_ := set $spec "automountServiceAccountToken" false }}
{{- end }}
{{- toYaml $spec }}
{{- end }}
