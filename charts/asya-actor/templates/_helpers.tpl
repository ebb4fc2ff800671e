{{/*
Names, labels and the constants every other template uses. Paths, volume and
container names are written here once; the other files include them.
*/}}

{{- define "asya-actor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name, truncated to a DNS label (63 characters). A release name
that already contains the chart name is used as is.
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

{{/*
Labels of one actor's objects. Input: dict "root" $ "actor" <actor>.
*/}}
{{- define "asya-actor.labels" -}}
helm.sh/chart: {{ include "asya-actor.chart" .root }}
{{ include "asya-actor.selectorLabels" . }}
{{- if not .actor.inList }}
{{ include "asya-actor.actorLabel" . }}
{{- end }}
{{- if .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: actor
app.kubernetes.io/part-of: asya
{{- end }}

{{/*
Selector labels. With an `actors` list the actor's name is part of the
selector, so that each Deployment selects only its own pods; a single actor
keeps the two standard labels (its selector never changes on upgrade).
*/}}
{{- define "asya-actor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "asya-actor.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .actor.inList }}
{{ include "asya-actor.actorLabel" . }}
{{- end }}
{{- end }}

{{- define "asya-actor.actorLabel" -}}
asya.io/actor: {{ .actor.actorName | quote }}
{{- end }}

{{/*
Constants shared by the runtime, the sidecar, the probes and the test pod.
The runtime and the sidecar agree on the socket only through ASYA_SOCKET_DIR,
so the chart owns that directory and sets the variable in both containers.
*/}}
{{- define "asya-actor.socketDir" -}}/var/run/asya{{- end }}
{{- define "asya-actor.runtimeDir" -}}/opt/asya{{- end }}
{{- define "asya-actor.runtimeFile" -}}asya_runtime.py{{- end }}
{{- define "asya-actor.runtimePath" -}}{{ include "asya-actor.runtimeDir" . }}/{{ include "asya-actor.runtimeFile" . }}{{- end }}
{{/* Where the runtime image keeps the file; an image volume mounts this directory. */}}
{{- define "asya-actor.runtimeImageDir" -}}asya{{- end }}
{{- define "asya-actor.runtimeVolume" -}}asya-runtime{{- end }}
{{- define "asya-actor.socketVolume" -}}asya-socket{{- end }}
{{- define "asya-actor.tmpVolume" -}}asya-tmp{{- end }}
{{- define "asya-actor.runtimeContainerName" -}}asya-runtime{{- end }}
{{- define "asya-actor.copyContainerName" -}}asya-runtime-init{{- end }}
{{- define "asya-actor.sidecarContainerName" -}}asya-sidecar{{- end }}
{{- define "asya-actor.testContainerName" -}}runtime-smoke-test{{- end }}
{{- define "asya-actor.topologyContainerName" -}}asya-topology{{- end }}
{{/*
Seconds the runtime still waits, after handlerTimeout, for a call stuck
outside Python code before it answers HandlerTimeout anyway: the runtime's
HANDLER_TIMEOUT_GRACE (tests/chart checks the two agree).
*/}}
{{- define "asya-actor.runtimeHandlerTimeoutGrace" -}}2{{- end }}
{{- define "asya-actor.ownVolumes" -}}
{{- toJson (list (include "asya-actor.runtimeVolume" .) (include "asya-actor.socketVolume" .) (include "asya-actor.tmpVolume" .)) }}
{{- end }}

{{/*
ASYA_HANDLER's shape: dotted Python identifiers, at least module.function.
It is the runtime's rule (`^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$` with Python's
Unicode \w): each part starts with an ASCII letter or underscore and may go on
with any Unicode letter, digit or underscore. values.schema.json carries the
same pattern for the value `handler`; tests/chart checks that all three agree.
*/}}
{{- define "asya-actor.handlerPattern" -}}
^[A-Za-z_][\p{L}\p{N}_]*(\.[A-Za-z_][\p{L}\p{N}_]*)+$
{{- end }}

{{/*
An image reference: repository@digest when a digest is given, else repository:tag.
Input: dict "repository" "tag" "digest".
*/}}
{{- define "asya-actor.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{/*
The runtime image reference: the tag defaults to the chart's appVersion.
Input: dict "root" $ "actor" <actor>.
*/}}
{{- define "asya-actor.runtimeImageRef" -}}
{{- $image := .actor.runtimeImage }}
{{- include "asya-actor.imageRef" (dict "repository" $image.repository "tag" (default .root.Chart.AppVersion $image.tag) "digest" $image.digest) }}
{{- end }}

{{/*
A number as the decimal text an env var needs (never 1.34217728e+08).
*/}}
{{- define "asya-actor.digits" -}}
{{- . | int64 | toString }}
{{- end }}

{{/*
The pods' service account: serviceAccount.name, or with create and no name
the actor's resource name; empty leaves the namespace's default.
Input: dict "root" "actor".
*/}}
{{- define "asya-actor.serviceAccountName" -}}
{{- if .actor.serviceAccount.create }}
{{- default .actor.resourceName .actor.serviceAccount.name }}
{{- else }}
{{- .actor.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The queue an actor (or an end queue such as happy-end) is consumed from: the
asya Go sidecar's `asya-<name>`. The sidecar publishes to it with the bare
name as routing key (asya-actor.topologyPlan binds it so). KEDA, NOTES and the
topology all take the name from here; tests/chart ties it to the fake
sidecar's asya_sidecar/topology.py. Input: the actor (or end queue) name.
*/}}
{{- define "asya-actor.queueName" -}}asya-{{ . }}{{- end }}

{{/*
A securityContext with the user's keys laid over the chart's defaults, key by
key (sprig's merge would turn a user's false back into the default true).
Used for the pod's and for the asya-runtime container's. Input: dict
"defaults" "over". Output: JSON.
*/}}
{{- define "asya-actor.securityContextOverlay" -}}
{{- $securityContext := deepCopy (.defaults | default dict) }}
{{- range $key, $value := .over | default dict }}
{{- $_ := set $securityContext $key $value }}
{{- end }}
{{- toJson $securityContext }}
{{- end }}
