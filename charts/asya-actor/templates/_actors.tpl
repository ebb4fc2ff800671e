{{/*
The actors of this release, each a complete set of values: the top-level
values, with an item of `actors` laid over them (maps merge key by key, lists
and scalars replace). Every per-actor template takes one of these.

Fields added to each actor:
  actorName     its queue (the item's `name`; alone: actorName or the release name)
  resourceName  the name of its Deployment, ScaledObject, PDB
  inList        true when it comes from the `actors` list
  nativeSidecar true/false, resolved against the cluster's version
  replyFormat   resolved from the sidecar flavor when not set

Output: a JSON list.
*/}}
{{- define "asya-actor.actors" -}}
{{- $root := . }}
{{- include "asya-actor.refuseReferenceKeys" (dict "values" .Values "where" "") }}
{{- range $index, $item := .Values.actors }}
{{- include "asya-actor.refuseReferenceKeys" (dict "values" (omit $item "name") "where" (printf "actors[%d]." $index)) }}
{{- end }}
{{- $defaults := omit .Values "actors" }}
{{- $actors := list }}
{{- if .Values.actors }}
{{- $seen := dict }}
{{- range $index, $item := .Values.actors }}
{{- if not $item.name }}
{{- fail (printf "actors[%d] has no name: give every actor a name (its queue, a lowercase DNS label)" $index) }}
{{- end }}
{{- if hasKey $seen $item.name }}
{{- fail (printf "actors has two items named %q: each actor needs its own name (its queue)" $item.name) }}
{{- end }}
{{- $_ := set $seen $item.name true }}
{{- $actor := include "asya-actor.merge" (dict "base" $defaults "over" (omit $item "name")) | fromJson }}
{{- $_ := set $actor "actorName" $item.name }}
{{- $_ := set $actor "inList" true }}
{{- $_ := set $actor "resourceName" (printf "%s-%s" (include "asya-actor.fullname" $root) $item.name | trunc 63 | trimSuffix "-") }}
{{- $actors = append $actors $actor }}
{{- end }}
{{- else }}
{{- $actor := deepCopy $defaults }}
{{- $_ := set $actor "actorName" (default .Release.Name .Values.actorName) }}
{{- $_ := set $actor "inList" false }}
{{- $_ := set $actor "resourceName" (include "asya-actor.fullname" $root) }}
{{- $actors = append $actors $actor }}
{{- end }}
{{- $resolved := list }}
{{- range $actor := $actors }}
{{- $resolved = append $resolved (include "asya-actor.resolve" (dict "root" $root "actor" $actor) | fromJson) }}
{{- end }}
{{- toJson $resolved }}
{{- end }}

{{/*
Deep merge of two value maps: "over" wins; maps merge, everything else replaces.
(sprig's mergeOverwrite would keep a default true where the override says false.)
*/}}
{{- define "asya-actor.merge" -}}
{{- $out := deepCopy .base }}
{{- range $key, $value := .over }}
{{- $current := index $out $key }}
{{- if and (kindIs "map" $value) (kindIs "map" $current) }}
{{- $_ := set $out $key (include "asya-actor.merge" (dict "base" $current "over" $value) | fromJson) }}
{{- else }}
{{- $_ := set $out $key $value }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
Checks of one actor's values that the schema cannot express, and the values
derived from the cluster or the flavor. Input: dict "root" $ "actor". Output: JSON.
*/}}
{{- define "asya-actor.resolve" -}}
{{- $root := .root }}
{{- $a := deepCopy .actor }}
{{- $name := $a.actorName }}
{{- $where := ternary (printf "actor %q: " $name) "" $a.inList }}
{{- if has $name (list $a.sidecar.happyEndQueue $a.sidecar.errorEndQueue) }}
{{- fail (printf "%sactorName %q is reserved for the pipeline's end queue; choose another actorName (or release name)" $where $name) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "%sactor name %q is not a lowercase DNS label (a-z, 0-9, '-'); set actorName (or the actors item's name)" $where $name) }}
{{- end }}
{{- $kubeVersion := $root.Capabilities.KubeVersion.Version }}

{{- /* Start and stop order. */}}
{{- $nativeSupported := semverCompare ">=1.29.0-0" $kubeVersion }}
{{- $native := false }}
{{- if kindIs "bool" $a.nativeSidecar }}
{{- $native = $a.nativeSidecar }}
{{- if and $native (not $nativeSupported) }}
{{- fail (printf "%snativeSidecar is true but this cluster is Kubernetes %s: restartable init containers need 1.29 or newer; set nativeSidecar to auto or false" $where $kubeVersion) }}
{{- end }}
{{- else }}
{{- $native = $nativeSupported }}
{{- end }}
{{- $_ := set $a "nativeSidecar" $native }}

{{- if and (eq $a.runtimeDelivery "imageVolume") (not (semverCompare ">=1.33.0-0" $kubeVersion)) }}
{{- fail (printf "%sruntimeDelivery imageVolume needs Kubernetes 1.33 or newer (image volumes with subPath; the ImageVolume feature gate on); this cluster is %s: use runtimeDelivery initContainer" $where $kubeVersion) }}
{{- end }}

{{- /* The reply dialect follows the sidecar unless the user chose one. */}}
{{- if not $a.replyFormat }}
{{- $_ := set $a "replyFormat" (ternary "list" "status" (eq $a.sidecar.flavor "asya")) }}
{{- end }}

{{- /*
Timeouts, innermost first: a handler call is cut at handlerTimeout, the
sidecar gives up on a reply at runtimeTimeout, and a stopping pod is killed at
terminationGracePeriodSeconds. Each must fit in the next, or a message in
flight is lost (or redelivered while still being processed).
*/}}
{{- $runtimeTimeout := include "asya-actor.sidecarTimeout" $a | int64 }}
{{- $handlerTimeout := $a.handlerTimeout | float64 }}
{{- $grace := $a.terminationGracePeriodSeconds | int64 }}
{{- with $a.workload.template.spec }}
{{- if hasKey . "terminationGracePeriodSeconds" }}
{{- $grace = .terminationGracePeriodSeconds | int64 }}
{{- end }}
{{- end }}
{{- /* The runtime answers a call stuck in C code up to its grace period after handlerTimeout. */}}
{{- $runtimeGrace := include "asya-actor.runtimeHandlerTimeoutGrace" $root | float64 }}
{{- if and (gt $handlerTimeout 0.0) (ge (addf $handlerTimeout $runtimeGrace) ($runtimeTimeout | float64)) }}
{{- fail (printf "%shandlerTimeout (%v s) plus the runtime's %v s grace period must be below sidecar.runtimeTimeout (%d s): the runtime has to answer HandlerTimeout before the sidecar stops waiting; lower handlerTimeout or raise sidecar.runtimeTimeout" $where $a.handlerTimeout $runtimeGrace $runtimeTimeout) }}
{{- end }}
{{- if le $grace $runtimeTimeout }}
{{- fail (printf "%sterminationGracePeriodSeconds (%d) must be above sidecar.runtimeTimeout (%d s): a pod stopped during a call would be killed before the reply; raise terminationGracePeriodSeconds or lower sidecar.runtimeTimeout" $where $grace $runtimeTimeout) }}
{{- end }}
{{- if and (eq $a.sidecar.flavor "asya") (eq $a.sidecar.transport "sqs") }}
{{- $visibility := $a.sidecar.sqs.visibilityTimeout | int64 }}
{{- if and (gt $visibility 0) (lt $visibility $runtimeTimeout) }}
{{- fail (printf "%ssidecar.sqs.visibilityTimeout (%d s) is below sidecar.runtimeTimeout (%d s): SQS would deliver a message again while its first call still runs; raise it or set 0 (twice runtimeTimeout)" $where $visibility $runtimeTimeout) }}
{{- end }}
{{- end }}

{{- with $a.autoscaling.keda }}
{{- if .enabled }}
{{- if ne $a.sidecar.flavor "asya" }}
{{- fail (printf "%sautoscaling.keda needs sidecar.flavor asya (a broker queue to measure); the fake sidecar's queues are directories" $where) }}
{{- end }}
{{- if gt (.minReplicaCount | int64) (.maxReplicaCount | int64) }}
{{- fail (printf "%sautoscaling.keda.minReplicaCount (%v) is above maxReplicaCount (%v)" $where .minReplicaCount .maxReplicaCount) }}
{{- end }}
{{- if and (eq $a.sidecar.transport "rabbitmq") (not .triggerAuthentication.name) }}
{{- fail (printf "%sautoscaling.keda with RabbitMQ needs autoscaling.keda.triggerAuthentication.name: a KEDA TriggerAuthentication giving the trigger its `host` (the AMQP URL, from a secret)" $where) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $a }}
{{- end }}

{{/*
The sidecar's reply timeout in seconds: sidecar.runtimeTimeout, or the
sidecar.env entry that replaces the chart's variable ("60" or "60s").
Input: an actor.
*/}}
{{- define "asya-actor.sidecarTimeout" -}}
{{- $timeout := .sidecar.runtimeTimeout | int64 }}
{{- $variable := include "asya-actor.sidecarTimeoutVariable" . }}
{{- range $entry := .sidecar.env }}
{{- if and (eq $entry.name $variable) (regexMatch "^[0-9]+s?$" (toString $entry.value)) }}
{{- $timeout = trimSuffix "s" (toString $entry.value) | int64 }}
{{- end }}
{{- end }}
{{- $timeout }}
{{- end }}

{{- define "asya-actor.sidecarTimeoutVariable" -}}
{{- ternary "ASYA_RUNTIME_TIMEOUT" "ASYA_CALL_TIMEOUT" (eq .sidecar.flavor "asya") }}
{{- end }}

{{/*
Keys of the asya project's own actor chart, which users bring along: each is
refused with the key of this chart that does the same.
*/}}
{{- define "asya-actor.refuseReferenceKeys" -}}
{{- $ours := dict "transport" "sidecar.transport (rabbitmq or sqs, with sidecar.flavor asya)" "scaling" "autoscaling.keda (enabled, minReplicaCount, maxReplicaCount, queueLength, ...)" "name" "actorName (one actor) or the name of each item of actors" }}
{{- range $key := list "transport" "scaling" "name" }}
{{- if hasKey $.values $key }}
{{- fail (printf "%s%s is a key of the asya project's actor chart, not of this one: use %s" $.where $key (get $ours $key)) }}
{{- end }}
{{- end }}
{{- end }}
